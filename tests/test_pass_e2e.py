"""CoSAPass end to end: ONNX model -> Relax -> every conv2d / matmul scheduled, checked and
lowered to TIR -> built for llvm -> the same numbers as onnxruntime."""

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
import tvm_ffi  # noqa: E402
from tvm import relax  # noqa: E402

from pass_helpers import conv_module, matmul_module  # noqa: E402
from tvm_cosa.models import (bert_encoder, input_feed, int8_mlp, mobilenet_v2,  # noqa: E402
                             resnet18, tiny_cnn)
from tvm_cosa.relax import CoSAPass  # noqa: E402
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error,  # noqa: E402
                                     run_onnxruntime, run_tvm)

TOLERANCE = 1e-4  # float32, relative to the largest output


def scheduled_funcs(mod):
    return [gv.name_hint for gv, f in mod.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
            and "tirx.is_scheduled" in f.attrs]


def compile_and_compare(model, arch, tmp_path, **options):
    mod = import_onnx(model)
    cosa = CoSAPass(arch, cache=tmp_path / "cache", **options)
    out = tvm.transform.Sequential([cosa])(mod)
    feed = input_feed(model)
    err = max_rel_error(run_tvm(build(out, arch=cosa.arch), feed),
                        run_onnxruntime(model, feed))
    return cosa.report, out, err


def assert_all_scheduled_and_checked(report, n_ops):
    assert len(report.records) == n_ops
    for r in report.records:
        assert r.status == "scheduled", (r.index, r.reason)
        assert r.cycles > 0 and r.lower_bound_cycles > 0
        assert 0 < r.utilization <= 1 and r.energy_pJ > 0
        assert r.check_backend in ("builtin", "timeloop") and r.solver in ("highs", "gurobi")
        assert r.schedule and r.lowering in ("generic", "gemmini")


MODELS = {
    # conv2d strided, dilated, grouped, depthwise and 1x1; Gemm; pooling; Clip; Flatten
    "tiny_cnn": (lambda: tiny_cnn(), 6),
    # the Shape/Gather/Concat/Reshape flatten of older exporters, opset 11
    "tiny_cnn_opset11": (lambda: tiny_cnn(opset=11, reshape_flatten=True), 6),
    # 2-D and batched 4-D matmuls (heads), Gelu as Erf, LayerNorm decomposed (opset 13)
    "bert": (lambda: bert_encoder(seq_len=16, hidden=32, heads=2, layers=1, opset=13), 8),
    # inverted residuals: 1x1 expand, 3x3 depthwise (stride 1 and 2), 1x1 project
    "mobilenet_v2": (lambda: mobilenet_v2(image_size=32, width_mult=0.5, blocks=3), 20),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("arch", ["simba", "gemmini"])
def test_each_operator_kind_matches_onnxruntime(name, arch, tmp_path):
    make, n_ops = MODELS[name]
    report, out, err = compile_and_compare(make(), arch, tmp_path)
    assert_all_scheduled_and_checked(report, n_ops)
    assert err <= TOLERANCE
    unique = {r.index for r in report.records if r.same_as is None}
    assert len(scheduled_funcs(out)) >= len(unique)


def test_int8_matmul_integer_model_is_exact(tmp_path):
    report, _, err = compile_and_compare(int8_mlp(), "simba", tmp_path)
    assert [r.status for r in report.records] == ["scheduled", "scheduled"]
    assert err == 0.0


@pytest.mark.parametrize("arch, lowering", [("simba", "generic"), ("gemmini", "gemmini")])
def test_int8_conv2d_and_matmul_equal_tvm_default(arch, lowering, tmp_path):
    rng = np.random.default_rng(0)
    for mod, shapes in (
            (conv_module(n=1, c=16, k=32, h=6, w=6, kernel=3, stride=1, pad=1, dilation=1,
                         groups=1, layout="NHWC", dtype="int8"), [(1, 6, 6, 16), (32, 3, 3, 16)]),
            (matmul_module((32, 16), (16, 48), "int8"), [(32, 16), (16, 48)])):
        cosa = CoSAPass(arch, cache=tmp_path)
        out = cosa(mod)
        (record,) = cosa.report.records
        assert record.status == "scheduled" and record.dtype == "int8"
        assert record.lowering == lowering
        feed = {str(i): rng.integers(-8, 8, s).astype("int8") for i, s in enumerate(shapes)}
        want = run_tvm(build(mod), feed)[0]
        got = run_tvm(build(out, arch=cosa.arch), feed)[0]
        np.testing.assert_array_equal(got, want)


def test_nhwc_after_convert_layout_in_a_sequential(tmp_path):
    model = tiny_cnn()
    cosa = CoSAPass("simba", cache=tmp_path)
    seq = tvm.transform.Sequential([
        relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
        relax.transform.FoldConstant(),
        cosa,
    ])
    with tvm.transform.PassContext(opt_level=3):
        out = seq(import_onnx(model))
    layouts = {r.layout for r in cosa.report.records if r.op == "conv2d"}
    assert layouts == {"NHWC"}
    assert all(r.status == "scheduled" for r in cosa.report.records)
    feed = input_feed(model)
    assert max_rel_error(run_tvm(build(out), feed), run_onnxruntime(model, feed)) <= TOLERANCE


def test_resnet18_at_224_end_to_end_on_gemmini(tmp_path):
    report, out, err = compile_and_compare(resnet18(), "gemmini", tmp_path)
    assert_all_scheduled_and_checked(report, 21)
    assert report.unique_layers == 12 and report.solved == 12
    assert err <= TOLERANCE


def test_lower_false_only_reports(tmp_path):
    mod = import_onnx(tiny_cnn())
    cosa = CoSAPass("simba", cache=tmp_path, lower=False)
    out = cosa(mod)
    assert tvm_ffi.structural_equal(out, mod)
    assert [r.status for r in cosa.report.records] == ["scheduled"] * 6
    assert all(r.lowering == "" for r in cosa.report.records)
