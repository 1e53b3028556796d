"""The generated Gemmini C on Gemmini's own simulator (Spike + libgemmini, against the real
gemmini.h): every Gemmini operator of small int8 models and of random conv2d / matmul layers is
bit-exact against the functional model and numpy; a wrong expectation is caught; the
configuration must be the simulator's; `--emit-c` output compiles against the real gemmini.h.
Skipped when Spike, the SDK or the RISC-V cross compiler is missing."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

tvm = pytest.importorskip("tvm")

from gemmini_util import conv_module, matmul_module  # noqa: E402
from tvm_cosa import InputError  # noqa: E402
from tvm_cosa.target.gemmini import GemminiConfig, flow, sdk, spike  # noqa: E402

MISSING = sdk.available()
needs_spike = pytest.mark.skipif(MISSING is not None, reason=f"Spike not usable: {MISSING}")
OPTIONS = dict(cache=False, jobs=1, check="builtin")

PARAMS = """
#define DIM 16
#define BANK_NUM 4
#define BANK_ROWS 4096
#define ACC_ROWS 1024
typedef int8_t elem_t;
typedef int32_t acc_t;
"""


def test_gemmini_params_h_must_describe_the_configuration():
    params = sdk.parse_params(PARAMS)
    assert params == {"dim": 16, "spad_rows": 16384, "acc_rows": 1024, "elem_t": "int8",
                      "acc_t": "int32"}
    assert sdk.config_differences(GemminiConfig(), params) == []
    diffs = sdk.config_differences(GemminiConfig(dim=8, dtype="float32"), params)
    assert any(d.startswith("DIM 16 in the header, 8") for d in diffs)
    assert any(d.startswith("elem_t int8 in the header, float32") for d in diffs)


def test_a_missing_sdk_or_spike_is_named(tmp_path, monkeypatch):
    with pytest.raises(sdk.ToolchainMissing, match="has no include/gemmini.h"):
        sdk.find_sdk(tmp_path)
    with pytest.raises(sdk.ToolchainMissing, match="--spike .* is not an executable"):
        sdk.find_spike(tmp_path / "spike")
    monkeypatch.setenv(sdk.CC_ENV, "no-such-riscv-gcc")
    with pytest.raises(sdk.ToolchainMissing, match="no-such-riscv-gcc was not found"):
        sdk.find_cross_compiler()


def run_module(mod, seed=0, mutate=None):
    compiled = flow.compile_module(mod, "gemmini", **OPTIONS)
    runner = flow.load(compiled.mod, compiled.config)
    rng = np.random.default_rng(seed)
    feed = {p.name: rng.integers(-128, 128, [int(d) for d in p.ty.shape], dtype=np.int8)
            for p in compiled.mod["main"].params}
    operators = spike.capture(runner, compiled.mod, feed)
    assert operators, "nothing was lowered onto Gemmini"
    if mutate:
        mutate(operators)
    return spike.run_on_spike(operators, compiled.config, jobs=2)


@needs_spike
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_conv2d_and_matmul_layers_are_bit_exact_on_spike(data):
    if data.draw(st.booleans(), label="conv"):
        c = data.draw(st.sampled_from([3, 16, 24, 40]), label="C")
        k = data.draw(st.sampled_from([8, 16, 32, 48]), label="K")
        kernel = data.draw(st.sampled_from([1, 3]), label="kernel")
        stride = data.draw(st.sampled_from([1, 2]), label="stride")
        hw = data.draw(st.integers(4, 12), label="H=W")
        pad = kernel // 2
        mod = conv_module((1, hw, hw, c), (kernel, kernel, c, k), stride=(stride, stride),
                          pad=(pad,) * 4)
    else:
        m, kk, n = (data.draw(st.integers(1, 70), label=x) for x in "MKN")
        mod = matmul_module((m, kk), (kk, n))
    (result,) = run_module(mod, seed=data.draw(st.integers(0, 9), label="seed"))
    assert result.ok, result.message
    assert result.spike_vs_functional == [0] and result.spike_vs_reference == [True]
    # computes issued by the CPU, or inside the loop_ws instructions that replace them
    computed = result.commands.get("compute_preloaded", 0) + result.commands.get("loop_ws", 0)
    assert computed >= 1 and result.bytes_moved["out"] > 0


@needs_spike
def test_a_wrong_expected_output_is_reported_as_a_difference():
    def corrupt(operators):
        out = operators[0].calls[0].output
        out.flat[5] += 1

    (result,) = run_module(matmul_module((20, 32), (32, 24)), mutate=corrupt)
    assert not result.ok
    assert result.spike_vs_functional == [1]  # exactly the corrupted element
    assert result.spike_vs_reference == [True]  # Spike itself still equals numpy
    assert "differs from the functional model" in result.message


@needs_spike
def test_verify_refuses_a_configuration_the_simulator_was_not_built_for(tmp_path):
    from tvm_cosa.cli import main
    from tvm_cosa.models import tiny_cnn

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), path)  # float32: Gemmini's float configuration, not Spike's int8 one
    result = CliRunner().invoke(main, ["verify", str(path), "--arch", "gemmini", "--no-cache",
                                       "--simulator", "spike"])
    assert result.exit_code != 0
    assert "is not the configuration gemmini-float32" in result.output
    assert "elem_t int8 in the header, float32 in the configuration" in result.output


@needs_spike
def test_verify_runs_every_gemmini_layer_of_a_small_int8_resnet18_on_spike(tmp_path):
    from tvm_cosa.models import int8

    path = tmp_path / "r18.onnx"
    onnx.save(int8.resnet18_int8(image_size=32, width=16), path)
    done = subprocess.run([sys.executable, "-m", "tvm_cosa.cli", "verify", str(path), "--arch",
                           "gemmini", "--no-cache", "--simulator", "spike"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "on the Gemmini array: 21 of 21" in done.stdout
    # 20 convolutions requantize on the array (relax/fuse_requant.py): one operator per shape,
    # scale and ReLU (16 with the classifier, which keeps its int32 output)
    assert "requantization on the Gemmini array: 20 of 21" in done.stdout
    assert "Spike: 16 of 16 Gemmini operators (21 calls) bit-exact" in done.stdout
    table = done.stdout.split("RoCC/call", 1)[1]
    assert table.count(" exact") == 16 and "MISMATCH" not in table


def quantize_with_onnxruntime(model, folder, reduce_range=False):
    """A float ONNX model through onnxruntime's quant_pre_process (BatchNorm folded) and
    quantize_static (QDQ, int8 weights per channel, uint8 activations; 7-bit weights with
    reduce_range), calibrated on seeded random inputs. Returns the path of the int8 model."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx.save(model, folder / "float.onnx")
    quant_pre_process(str(folder / "float.onnx"), str(folder / "pre.onnx"))
    weights = {t.name for t in model.graph.initializer}
    (graph_input,) = [v for v in model.graph.input if v.name not in weights]
    name = graph_input.name
    shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: rng.standard_normal(shape).astype(np.float32)}
                                 for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    path = folder / "int8.onnx"
    quantize_static(str(folder / "pre.onnx"), str(path), Calibration(),
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return path


def caffe2_export_for_the_quantizer(name, image_size):
    """A light-zoo graph of the onnx wheel (Caffe2 model-zoo export, opset 9, IR 3) as the
    quantizer takes it: weights only as initializers, IR 8, opset 13."""
    from onnx import version_converter

    from tvm_cosa.models.zoo import light_model

    model = light_model(name, image_size=image_size)
    weights = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model.ir_version = 8
    return version_converter.convert_version(model, 13)


@needs_spike
def test_an_onnxruntime_quantized_float_graph_runs_on_spike_bit_exactly(tmp_path):
    from tvm_cosa.models import input_feed, tiny_cnn
    from tvm_cosa.relax.frontend import import_onnx

    model = onnx.load(quantize_with_onnxruntime(tiny_cnn(), tmp_path))
    compiled = flow.compile_module(import_onnx(model), "gemmini", **OPTIONS)
    on_array = [r for r in compiled.report.records if r.lowering == "gemmini"]
    # its convolutions, and its QDQ Gemm as a MatMulInteger (tvm_cosa.relax.onnx_qops)
    assert sum(r.op == "conv2d" for r in on_array) >= 3
    assert {r.op for r in on_array} == {"conv2d", "matmul"}
    runner = flow.load(compiled.mod, compiled.config)
    operators = spike.capture(runner, compiled.mod, input_feed(model))
    results = spike.run_on_spike(operators, compiled.config, jobs=2)
    assert sum(len(r.operator.calls) for r in results) == len(on_array)
    assert all(r.ok for r in results), spike.results_table(results)


@needs_spike
def test_a_quantized_third_party_graph_is_bit_exact_on_spike(tmp_path):
    """Caffe2's SqueezeNet (the onnx wheel's light zoo, 64x64) through onnxruntime's
    quantize_static: every Gemmini call bit-exact on Spike; the logits equal onnxruntime's; the
    Softmax output is the one place onnxruntime computes its own way (QLinearSoftmax), named in
    the notes."""
    from tvm_cosa.models import input_feed
    from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime

    model = onnx.load(quantize_with_onnxruntime(
        caffe2_export_for_the_quantizer("squeezenet", 64), tmp_path, reduce_range=True))
    compiled = flow.compile_module(import_onnx(model), "gemmini", **OPTIONS)
    on_array = [r for r in compiled.report.records if r.lowering == "gemmini"]
    assert len(on_array) == len(compiled.report.records) == 26  # its 26 convolutions
    assert any("QLinearSoftmax" in note for note in compiled.report.exactness_notes)
    runner = flow.load(compiled.mod, compiled.config)
    feed = input_feed(model)
    names = [o.name for o in model.graph.output]
    logits = names.index(next(n for n in names if "softmax" not in n.lower()))
    np.testing.assert_array_equal(runner(feed)[logits], run_onnxruntime(model, feed)[logits])
    results = spike.run_on_spike(spike.capture(runner, compiled.mod, feed), compiled.config,
                                 jobs=2)
    assert sum(len(r.operator.calls) for r in results) == 26
    assert all(r.ok for r in results), spike.results_table(results)


@needs_spike
def test_emitted_c_compiles_against_the_real_gemmini_h(tmp_path):
    from tvm_cosa.target.gemmini import codegen

    compiled = flow.compile_module(conv_module((1, 8, 8, 16), (3, 3, 16, 32), pad=(1,) * 4),
                                   "gemmini", **OPTIONS)
    out = codegen.emit_c(compiled.mod, tmp_path / "c", compiled.config)
    toolchain = sdk.find_toolchain()
    source = next(s for s in out["sources"] if "gemmini_extended_mvin" in s.read_text())
    obj = toolchain.compile_object(source, tmp_path / "model.o",
                                   ["-include", "include/gemmini.h",
                                    *[f"-I{d}" for d in spike.tvm_include_dirs()]])
    assert obj.stat().st_size > 0
    symbols = subprocess.run(["riscv64-unknown-elf-nm", str(obj)], capture_output=True,
                             text=True).stdout
    # the ISA calls became RoCC instructions (macros), not calls to functions of that name
    assert "gemmini_extended_mvin" not in symbols and "gemmini_begin_op" in symbols


def test_check_config_raises_input_error_naming_the_header(tmp_path):
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "gemmini.h").write_text("")
    (tmp_path / "include" / "gemmini_params.h").write_text(PARAMS.replace("DIM 16", "DIM 8"))
    toolchain = sdk.Toolchain(tmp_path, tmp_path / "spike", tmp_path / "cc")
    with pytest.raises(InputError, match=r"gemmini_params.h is not the configuration gemmini: "
                                         r"DIM 8 in the header, 16 in the configuration"):
        toolchain.check_config(GemminiConfig())


@settings(max_examples=6, deadline=None, derandomize=True)
@given(layout=st.sampled_from(["NHWC", "NCHW"]), klayout=st.sampled_from(["HWIO", "OIHW"]),
       groups=st.sampled_from([1, 2, 4]), stride=st.integers(1, 2), dilation=st.integers(1, 2),
       pad=st.tuples(*[st.integers(0, 2)] * 4), kernel=st.sampled_from([1, 3]))
def test_the_onnxruntime_reference_of_a_conv_equals_numpy(layout, klayout, groups, stride,
                                                         dilation, pad, kernel):
    rng = np.random.default_rng(0)
    cin, cout, hw = 4 * groups, 2 * groups, 7
    x = rng.integers(-128, 128, (1, hw, hw, cin) if layout == "NHWC" else (1, cin, hw, hw),
                     dtype=np.int8)
    hwio = (kernel, kernel, cin // groups, cout)
    w = rng.integers(-128, 128, hwio, dtype=np.int8)
    w = w if klayout == "HWIO" else w.transpose(3, 2, 0, 1)
    attrs = {"layout": layout, "kernel_layout": klayout, "strides": (stride, stride),
             "padding": pad, "dilation": (dilation, dilation), "groups": groups}
    op = spike.Operator("conv", None, 0, {"kind": "conv2d", "attrs": attrs})
    got = spike.reference(op, [x, w], np.int32)
    want = spike.numpy_reference(op, [x, w], np.int32)
    assert got.shape == want.shape and np.array_equal(got, want)
    # and a batched matmul
    a = rng.integers(-128, 128, (3, 5, 6), dtype=np.int8)
    b = rng.integers(-128, 128, (3, 6, 4), dtype=np.int8)
    mm = spike.Operator("mm", None, 0, {"kind": "matmul"})
    assert np.array_equal(spike.reference(mm, [a, b], np.int32),
                          np.matmul(a.astype(np.int64), b.astype(np.int64)))
