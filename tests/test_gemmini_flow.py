"""The Gemmini flow as a user meets it: GemminiPrepare + CoSAPass("gemmini") in a Sequential, the
configuration following the module's element type, the report saying which one was used (and
why a layer's lowering is generic), models of several configurations in one process, and the
README's main example."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

tvm = pytest.importorskip("tvm")

from gemmini_util import conv_module, conv_ref, matmul_module  # noqa: E402
from tvm_cosa import InputError, preset  # noqa: E402
import tvm_ffi  # noqa: E402
from tvm_cosa.models import input_feed, tiny_cnn  # noqa: E402
from tvm_cosa.relax import CoSAPass  # noqa: E402
from tvm_cosa.relax.extract import extract  # noqa: E402
from tvm_cosa.relax.frontend import (build, import_onnx, run_onnxruntime,  # noqa: E402
                                     run_tvm)
from tvm_cosa.target.gemmini import GemminiConfig, GemminiPrepare, config_for, flow  # noqa: E402
from tvm_cosa.target.gemmini.config import matching_dtype  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = dict(cache=False, jobs=1, check="builtin")


def float_conv():
    return conv_module((1, 8, 8, 16), (3, 3, 16, 32), dtype="float32", pad=(1, 1, 1, 1))


def int8_conv():
    return conv_module((1, 8, 8, 16), (3, 3, 16, 32), dtype="int8", pad=(1, 1, 1, 1))


def test_the_preset_follows_the_module_element_type():
    cosa = CoSAPass("gemmini", **OPTIONS)
    cosa(float_conv())
    float32 = GemminiConfig(dtype="float32")
    assert cosa.arch == float32.architecture()
    spad = cosa.arch.levels[cosa.arch.level_index("Scratchpad")]
    assert spad.entries == 256 * 1024 // 4 and spad.word_bits == 32  # float32 words
    (rec,) = cosa.report.records
    assert (rec.lowering, rec.arch, rec.arch_dtype) == ("gemmini", "gemmini-float32", "float32")
    assert "matched to the module's float32 operands" in cosa.report.table()
    # the same pass object on an int8 module: the int8 preset, chosen again
    cosa(int8_conv())
    (rec,) = cosa.report.records
    assert cosa.arch == preset("gemmini")
    assert (rec.lowering, rec.arch, rec.arch_dtype) == ("gemmini", "gemmini", "int8")
    assert "operators on gemmini (int8):" in cosa.report.table()


def test_an_explicit_architecture_is_used_as_is_and_the_table_says_why():
    cosa = CoSAPass(preset("gemmini"), **OPTIONS)
    cosa(float_conv())
    (rec,) = cosa.report.records
    assert rec.status == "scheduled" and rec.lowering == "generic" and rec.arch == "gemmini"
    table = cosa.report.table()
    row = table.splitlines()[2]
    assert "generic [1]" in row
    note = [line for line in table.splitlines() if line.startswith("[1] #0:")]
    assert note and "operands float32 x float32; gemmini computes int8" in note[0]
    assert "GemminiConfig(dtype='float32')" in note[0]
    # a GemminiConfig is an explicit architecture too
    cosa = CoSAPass(GemminiConfig(dtype="float32"), **OPTIONS)
    cosa(float_conv())
    assert cosa.report.records[0].lowering == "gemmini" and cosa.report.arch_note == ""


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.sets(st.sampled_from(["int8", "int32", "float32", "float16", "uint8"])))
def test_matching_dtype_prefers_int8_then_float32(dtypes):
    got = matching_dtype(dtypes, default="x")
    if "int8" in dtypes:
        assert got == "int8"
    elif "float32" in dtypes:
        assert got == "float32"
    else:
        assert got == "x"


def test_gemmini_prepare_in_a_sequential_puts_every_layer_on_the_array():
    """NCHW convolutions with 3 and 10 channels: prepared to NHWC / HWIO with channels padded
    to the array width, scheduled for the float32 configuration, all on the array, and the
    same numbers as onnxruntime."""
    model = tiny_cnn()
    cfg = GemminiConfig(dim=8, dtype="float32")
    cosa = CoSAPass(cfg.architecture(), **OPTIONS)
    mod = tvm.transform.Sequential([GemminiPrepare(cfg), cosa])(import_onnx(model))
    convs = [r for r in cosa.report.records if r.op == "conv2d"]
    assert {r.layout for r in convs} == {"NHWC"}
    for r in convs:
        size = dict(term.split("=") for term in r.problem.split())
        if "G" not in size:  # grouped ones keep their channels
            assert int(size["C"]) % 8 == 0 and int(size["K"]) % 8 == 0, r.problem
    lowering = [r.lowering for r in cosa.report.records]
    assert lowering == ["gemmini"] * 6  # #3, the depthwise one, too
    runner = flow.load(mod, config_for(cosa.arch))
    feed = input_feed(model)
    ok, text = flow.compare(runner(feed), run_onnxruntime(model, feed), 1e-4)
    assert ok, text
    assert runner.model.counters()["calls"] == 6
    assert runner.model.dim == 8


def test_gemmini_prepare_takes_a_width_a_config_or_an_architecture():
    mod = conv_module((1, 5, 5, 3), (3, 3, 3, 5), dtype="float32")
    for spec, width in ((8, 8), ("gemmini", 16), (GemminiConfig(dim=4), 4),
                        (GemminiConfig(dim=32).architecture(), 32)):
        (op,) = extract(GemminiPrepare(spec)(mod))
        # 3 input and 5 output channels, rounded up to the width
        assert (op.problem.size["C"], op.problem.size["K"]) == (width, -(-5 // width) * width)
    with pytest.raises(InputError, match="not a Gemmini model"):
        GemminiPrepare(preset("simba"))


def test_models_for_int8_and_float32_configurations_run_in_one_process(tmp_path):
    """Each built model links its own functional model: an int8 and a float32 one loaded in
    the same process both compute right (one shared global copy gave NaNs for the second)."""
    rng = np.random.default_rng(0)
    for make, dtype in ((int8_conv, "int8"), (float_conv, "float32"), (int8_conv, "int8")):
        cosa = CoSAPass("gemmini", **OPTIONS)
        out = cosa(make())
        assert cosa.report.records[0].lowering == "gemmini"
        x = rng.integers(-8, 8, (1, 8, 8, 16)).astype(dtype)
        w = rng.integers(-8, 8, (3, 3, 16, 32)).astype(dtype)
        got = run_tvm(build(out, arch=cosa.arch), {"x": x, "w": w})[0]
        np.testing.assert_array_equal(got, conv_ref(x, w, stride=(1, 1), pad=(1, 1, 1, 1)))


def test_compile_module_matches_the_config_and_reports_it(tmp_path):
    mod = matmul_module((4, 20), (20, 24), dtype="float32")
    compiled = flow.compile_module(mod, GemminiConfig(dim=8), **OPTIONS)
    assert compiled.config == GemminiConfig(dim=8, dtype="float32")
    (rec,) = compiled.report.records
    assert rec.lowering == "gemmini" and rec.arch == "gemmini-8x8-float32"
    assert "float32 operands, matched to the module" in compiled.report.table()
    runner = flow.load(compiled.mod, compiled.config, path=tmp_path / "mm.so")
    assert (tmp_path / "mm.so").is_file()
    a = np.random.default_rng(1).standard_normal((4, 20)).astype(np.float32)
    b = np.random.default_rng(2).standard_normal((20, 24)).astype(np.float32)
    (got,) = runner({"x": a, "w": b})
    np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="dtype"):
        flow.compile_module(mod, "gemmini", dtype="int4")


def test_compare_flags_shapes_integers_and_relative_error():
    ok, text = flow.compare([np.ones(3, np.float32)], [np.ones(3, np.float32) * 1.001], 1e-4)
    assert not ok and "MISMATCH" in text
    ok, text = flow.compare([np.arange(3)], [np.arange(3)], 0)
    assert ok and "exact" in text
    ok, text = flow.compare([np.ones(2)], [np.ones(3)], 1)
    assert not ok and "shape" in text


def test_the_readme_main_example_runs_resnet18_on_the_array(tmp_path, monkeypatch, capsys):
    """examples/compile_resnet18.py (at 32x32 pixels to keep the test short), run as a script."""
    monkeypatch.setenv("TVM_COSA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["compile_resnet18.py", "--image-size", "32",
                                      "--report", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "examples" / "compile_resnet18.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert "on the Gemmini array: 21 of 21 conv2d / matmul layers" in out
    assert "21 operators on gemmini-float32: 21 scheduled" in out
    total = [line for line in out.splitlines() if line.startswith("total")][0].split()
    assert total[1] == "21" and int(total[10]) > 0  # calls, bytes moved in
    assert out.rstrip().endswith("OK") and "max relative error" in out
    assert (tmp_path / "r.json").is_file()


def test_weight_rewrites_folded_with_numpy_equal_tvm_fold_constant(monkeypatch):
    """The preparation's rewrites of constants (weight layouts, channel padding, the importer's
    Clip bounds and bias reshapes) computed with numpy give exactly the module TVM's
    FoldConstant alone gives (it compiles and runs a kernel for each of them)."""
    from tvm import relax

    from tvm_cosa.target.gemmini import prepare

    mod = import_onnx(tiny_cnn())  # ReLU6 as Clip, biases, strided / grouped / 1x1 convolutions
    ours = prepare.prepare_module(mod, 16)
    with monkeypatch.context() as patch:
        patch.setattr(prepare, "fold_weight_rewrites", lambda m: m)
        reference = prepare.prepare_module(mod, 16)
    assert tvm_ffi.structural_equal(ours, reference)

    # the numpy folding leaves no call on constants alone for FoldConstant to compile
    converted = relax.transform.Normalize()(relax.transform.ConvertLayout(
        {"relax.nn.conv2d": ["NHWC", "HWIO"]})(mod))
    assert constant_calls(converted) > 0
    assert constant_calls(prepare.fold_weight_rewrites(converted)) == 0


def constant_calls(mod) -> int:
    """Calls whose tensor arguments are all constants (directly or through a binding)."""
    from tvm import relax

    count = 0

    @relax.expr_functor.visitor
    class Counter(relax.PyExprVisitor):
        def __init__(self):
            super().__init__()
            self.constants = []  # vars bound to constants

        def visit_var_binding_(self, binding):
            super().visit_var_binding_(binding)
            if isinstance(binding.value, tvm.ir.expr.Constant):
                self.constants.append(binding.var)

        def visit_call_(self, call):
            nonlocal count
            super().visit_call_(call)
            tensors = [a for a in call.args if not isinstance(a, relax.ShapeExpr)]
            if tensors and all(isinstance(a, tvm.ir.expr.Constant) or (
                    isinstance(a, relax.Var) and any(a.same_as(v) for v in self.constants))
                    for a in tensors):
                count += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            Counter().visit_expr(func)
    return count
