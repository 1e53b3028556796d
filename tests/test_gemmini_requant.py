"""Requantization on the Gemmini array (relax/fuse_requant.py, target/gemmini/requant.py).

- libgemmini's ACC_SCALE (mvout of accumulator rows through config_st's scale and ReLU) equals
  onnxruntime's requantization `saturate(round_half_even(float32(acc) * m))` bit for bit, ties
  and large sums included, on Spike and on the functional model;
- random int8 convolutions (ConvInteger + int32 bias + ReLU + QuantizeLinear, as the models of
  tvm_cosa.models) fold into one Gemmini operator that writes int8, exact against
  onnxruntime on the functional model and on Spike;
- QLinearConv with a per-tensor multiplier that is not a power of two is fused; per-channel
  scales and non-zero output zero points stay on the CPU with the reason.
Spike parts skip without Spike and the RISC-V cross compiler.
"""

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from onnx import TensorProto, helper

tvm = pytest.importorskip("tvm")

from spike_programs import c_array, run_on_model, run_on_spike  # noqa: E402
from tvm_cosa.models.int8 import Int8Builder, _quantized_input  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime  # noqa: E402
from tvm_cosa.target.gemmini import GemminiConfig, flow, sdk, spike  # noqa: E402
from tvm_cosa.target.gemmini.requant import Requant  # noqa: E402

OPTIONS = dict(cache=False, jobs=1, check="builtin")
SPIKE_MISSING = sdk.available()


# ---- ACC_SCALE against onnxruntime's rounding ------------------------------------------------
def acc_scale_program(acc: np.ndarray, scale: np.float32, relu: bool) -> str:
    """mvin3 raw int32 rows into the accumulator, mvout them scaled (and ReLU) to int8."""
    rows = acc.shape[0]
    bits = int(np.float32(scale).view(np.uint32))
    return (c_array("acc", "int32_t", acc) + f"static int8_t out[{rows}][DIM];\n" + f"""
int main(void) {{
  union {{ uint32_t bits; float value; }} scale = {{ {bits}u }};
  gemmini_flush(0);
  GEMMINI_CONFIG_LD(DIM * sizeof(int32_t), 2);
  gemmini_extended_config_st(DIM, {1 if relu else 0}, scale.value);
  for (int r = 0; r < {rows}; r += DIM) {{
    int n = {rows} - r < DIM ? {rows} - r : DIM;
    gemmini_extended_mvin3(&acc[r][0], (1u << 31) | r, DIM, n);
    gemmini_extended_mvout(&out[r][0], (1u << 31) | r, DIM, n);
  }}
  gemmini_fence();
  printf("BEGIN\\n");
  for (int r = 0; r < {rows}; r++)
    for (int c = 0; c < DIM; c++) printf("%d\\n", out[r][c]);
  printf("END\\n");
  return 0;
}}
""")


def tie_values(rng, scale, count):
    """int32 sums whose product with `scale` is exactly k + 0.5 (round-half-even ties), plus
    random ones of every magnitude (some beyond 2^24, where the float32 conversion rounds)."""
    halves = rng.integers(-300, 300, count) + 0.5
    ties = np.round(halves / np.float64(scale)).astype(np.int64)
    ties = ties[(np.float32(ties) * np.float32(scale)) % 1 == 0.5]
    wide = rng.integers(-2 ** 31, 2 ** 31, count, dtype=np.int64)
    small = rng.integers(-40000, 40000, count)
    values = np.concatenate([ties, wide, small, [0, -1, 2 ** 31 - 1, -2 ** 31]])
    values = values[: len(values) // 16 * 16]
    return values.astype(np.int32).reshape(-1, 16)


def onnxruntime_requantize(acc: np.ndarray, scale: np.float32) -> np.ndarray:
    """onnxruntime's QuantizeLinear(float32(acc) * scale, 1.0, int8 0): the same rounding and
    saturation as its QLinearConv requantization."""
    node_mul = helper.make_node("Mul", ["f", "m"], ["p"])
    node_q = helper.make_node("QuantizeLinear", ["p", "one", "zero"], ["y"])
    graph = helper.make_graph(
        [node_mul, node_q], "requant",
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, list(acc.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT8, list(acc.shape))],
        initializer=[helper.make_tensor("m", TensorProto.FLOAT, [], [float(scale)]),
                     helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                     helper.make_tensor("zero", TensorProto.INT8, [], [0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"f": acc.astype(np.float32)})[0]


@pytest.mark.parametrize("scale,relu", [(np.float32(2.0 ** -9), False),
                                        (np.float32(0.0123456789), True),
                                        (np.float32(3.0e-5), False)])
def test_acc_scale_equals_onnxruntime_requantization(tmp_path, scale, relu):
    acc = tie_values(np.random.default_rng(7), scale, 96)
    want = onnxruntime_requantize(acc, scale)
    if relu:
        want = np.maximum(want, 0)
    assert np.array_equal(Requant(float(scale), relu).apply(acc), want)
    source = acc_scale_program(acc, scale, relu)
    got = np.array(run_on_model(source, tmp_path / "model", GemminiConfig()).split(), np.int64)
    assert np.array_equal(got.reshape(acc.shape), want)
    if SPIKE_MISSING is None:
        got = np.array(run_on_spike(source, tmp_path / "spike").split(), np.int64)
        assert np.array_equal(got.reshape(acc.shape), want)


# ---- fused convolutions ------------------------------------------------------------------------
def conv_model(cin, cout, k, stride, hw, relu, seed):
    """float input -> QuantizeLinear -> ConvInteger + int32 bias (+ Relu) -> requantized int8
    (power-of-two scales), as tvm_cosa.models builds every convolution."""
    b = Int8Builder("requant_conv", seed=seed)
    x = _quantized_input(b, (1, cin, hw, hw), seed)
    y = b.conv_integer(x, cin, cout, k, stride=stride, relu=relu, hint="conv")
    out = (hw + 2 * ((k - 1) // 2) - k) // stride + 1
    return b.build(y, (1, cout, out, out), output_dtype="int8")


def compile_and_run(model, feed):
    compiled = flow.compile_module(import_onnx(model), "gemmini", **OPTIONS)
    runner = flow.load(compiled.mod, compiled.config)
    got = runner(feed)
    want = run_onnxruntime(model, feed)
    return compiled, runner, got, want


def fused_kernels(mod) -> list:
    return [f for f in spike.gemmini_functions(mod).values()
            if "requant" in str(f.params) or len(f.params) == 4]


@settings(max_examples=4, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.sampled_from([3, 16, 24, 40]), cout=st.sampled_from([8, 16, 32, 48]),
       k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]), hw=st.integers(4, 12),
       relu=st.booleans(), seed=st.integers(0, 1000))
def test_random_int8_convolutions_requantize_on_the_array_exactly(cin, cout, k, stride, hw, relu,
                                                                    seed):
    model = conv_model(cin, cout, k, stride, hw, relu, seed)
    feed = {"input": np.random.default_rng(seed).standard_normal((1, cin, hw, hw))
            .astype(np.float32)}
    compiled, runner, got, want = compile_and_run(model, feed)
    assert got[0].dtype == np.int8 and np.array_equal(got[0], want[0])
    notes = "\n".join(compiled.report.notes)
    assert "requantization on the Gemmini array: 1 of 1" in notes, notes
    counters = runner.model.counters()
    padded_channels = -(-cout // 16) * 16  # GemminiPrepare pads them to the array width
    out = want[0].size // cout * padded_channels
    assert counters["bytes_out"] == out  # int8 results, once each: no int32 leaves the array
    assert counters["bytes_in_acc"] > 0  # the bias, loaded into the accumulator
    if SPIKE_MISSING is None:
        operators = spike.capture(runner, compiled.mod, feed)
        (result,) = spike.run_on_spike(operators, compiled.config, jobs=1)
        assert result.ok, result.message
        assert result.operator.info["requant"]["relu"] == relu


def test_without_requant_the_int32_result_leaves_the_array():
    model = conv_model(16, 16, 3, 1, 8, True, 3)
    feed = {"input": np.random.default_rng(3).standard_normal((1, 16, 8, 8)).astype(np.float32)}
    fused, plain = (flow.compile_module(import_onnx(model), "gemmini", requant=r, **OPTIONS)
                    for r in (True, False))
    outs = {}
    for name, compiled in (("fused", fused), ("plain", plain)):
        runner = flow.load(compiled.mod, compiled.config)
        outs[name] = (runner(feed)[0], runner.model.counters())
    assert np.array_equal(outs["fused"][0], outs["plain"][0])
    assert outs["plain"][1]["bytes_out"] == 4 * outs["fused"][1]["bytes_out"]
    assert not any("requantization on the Gemmini array" in n for n in plain.report.notes)


def qlinear_conv_model(w_scale, y_zero_point=0, cin=16, cout=32, hw=6, seed=0, y_type="int8"):
    """QLinearConv on int8 weights (zero point 0), int32 bias; int8 input and output (zero
    point 0 in) or uint8 ones (zero point 128 in: onnxruntime wants the same types)."""
    onnx_type = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8}[y_type]
    rng = np.random.default_rng(seed)
    # uint8 x int8: 7-bit weights, as onnxruntime's u8s8 kernel without VNNI saturates pairs
    # of 8-bit products (the README's "differs" rows)
    limit = 128 if y_type == "int8" else 64
    w = rng.integers(-limit + 1, limit, (cout, cin, 3, 3), dtype=np.int8)
    bias = rng.integers(-3000, 3000, cout, dtype=np.int32)
    w_scale = np.asarray(w_scale, np.float32)
    inits = [helper.make_tensor("xs", TensorProto.FLOAT, [], [0.0213]),
             helper.make_tensor("xz", onnx_type, [], [0 if y_type == "int8" else 128]),
             onnx.numpy_helper.from_array(w, "w"),
             onnx.numpy_helper.from_array(w_scale, "ws"),
             onnx.numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "wz"),
             helper.make_tensor("ys", TensorProto.FLOAT, [], [0.3777]),
             helper.make_tensor("yz", onnx_type, [], [y_zero_point]),
             onnx.numpy_helper.from_array(bias, "b")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "qlinearconv",
                              [helper.make_tensor_value_info("x", onnx_type, [1, cin, hw, hw])],
                              [helper.make_tensor_value_info("y", onnx_type, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("case", ["per_tensor", "uint8_128", "per_channel", "zero_point",
                                  "uint8_100"])
def test_qlinear_conv_requantizes_on_the_array_only_when_gemmini_can(case):
    w_scale = {"per_tensor": 0.00731,
               "per_channel": np.linspace(0.002, 0.01, 32)}.get(case, 0.00731)
    zero_point = {"zero_point": 5, "uint8_128": 128, "uint8_100": 100}.get(case, 0)
    model = qlinear_conv_model(w_scale, y_zero_point=zero_point,
                               y_type="uint8" if case.startswith("uint8") else "int8")
    x = np.random.default_rng(1).integers(-128, 128, (1, 16, 6, 6), dtype=np.int8)
    feed = {"x": (x.astype(np.int32) + 128).astype(np.uint8) if case.startswith("uint8") else x}
    compiled, runner, got, want = compile_and_run(model, feed)
    assert got[0].dtype == want[0].dtype and np.array_equal(got[0], want[0])
    notes = "\n".join(compiled.report.notes)
    if case in ("per_tensor", "uint8_128"):  # a multiplier that is not a power of two, passed
        # by its bits; uint8 with zero point 128 is the int8 result + 128
        assert "requantization on the Gemmini array: 1 of 1" in notes, notes
        if SPIKE_MISSING is None:
            operators = spike.capture(runner, compiled.mod, feed)
            (result,) = spike.run_on_spike(operators, compiled.config, jobs=1)
            assert result.ok, result.message
    else:
        assert "requantization on the Gemmini array: 0 of 1" in notes, notes
        reason = {"per_channel": "per-channel", "zero_point": "output zero point 5.0",
                  "uint8_100": "output zero point 100.0"}[case]
        assert reason in notes


def quantize_symmetric(model, folder):
    """onnxruntime's quant_pre_process + quantize_static: QDQ, int8 activations and weights,
    symmetric (zero points 0), per tensor, calibrated on seeded random inputs."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx.save(model, folder / "float.onnx")
    quant_pre_process(str(folder / "float.onnx"), str(folder / "pre.onnx"))
    (graph_input,) = model.graph.input
    shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{graph_input.name: rng.standard_normal(shape)
                                  .astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(folder / "pre.onnx"), str(folder / "int8.onnx"), Calibration(),
                    quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True})
    return onnx.load(folder / "int8.onnx")


def test_a_symmetric_onnxruntime_quantized_graph_requantizes_every_layer_on_the_array(tmp_path):
    """tiny_cnn (float) through onnxruntime's quantizer, symmetric per tensor: every conv
    (grouped and depthwise too) and the Gemm requantize on Gemmini, exact against onnxruntime
    (and on Spike)."""
    from tvm_cosa.models import input_feed, tiny_cnn

    model = quantize_symmetric(tiny_cnn(), tmp_path)
    feed = input_feed(model)
    compiled, runner, got, want = compile_and_run(model, feed)
    ok, text = flow.compare(got, want, 0.0)
    assert ok, text
    layers = len(compiled.report.records)
    assert f"requantization on the Gemmini array: {layers} of {layers}" in \
        "\n".join(compiled.report.notes)
    if SPIKE_MISSING is None:
        operators = spike.capture(runner, compiled.mod, feed)
        assert all(op.info["requant"] for op in operators)
        results = spike.run_on_spike(operators, compiled.config, jobs=2)
        assert all(r.ok for r in results), spike.results_table(results)


def test_the_standard_build_runs_requantized_operators(tmp_path):
    """GemminiPrepare + CoSAPass + FuseRequant in a Sequential, then tvm.compile and the VM."""
    from tvm import relax

    from tvm_cosa.relax.frontend import run_tvm
    from tvm_cosa.relax.fuse_requant import FuseRequant
    from tvm_cosa.relax.pass_ import CoSAPass
    from tvm_cosa.target.gemmini import GemminiPrepare

    model = conv_model(16, 32, 3, 1, 8, True, 5)
    feed = {"input": np.random.default_rng(5).standard_normal((1, 16, 8, 8)).astype(np.float32)}
    fuse = FuseRequant()
    seq = tvm.transform.Sequential([GemminiPrepare("gemmini"), CoSAPass("gemmini", **OPTIONS),
                                    fuse.pass_])
    mod = seq(import_onnx(model))
    assert fuse.report.fused == 1, fuse.report.text()
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    assert np.array_equal(run_tvm(vm, feed)[0], run_onnxruntime(model, feed)[0])


def scaled_loop_ws_program(rng, I, J, K, pads, relu, scale):
    """loop_ws with the bias as a repeating D (D stride 0, config_ld stride 0), accumulated
    onto (ex_accumulate), and C moved out as int8 through config_st's scale (full_C = 0)."""
    pad_i, pad_j, pad_k = pads
    m, n, k = I * 16 - pad_i, J * 16 - pad_j, K * 16 - pad_k
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    bias = rng.integers(-2 ** 16, 2 ** 16, n)
    bits = int(np.float32(scale).view(np.uint32))
    source = (c_array("A", "int8_t", a) + c_array("B", "int8_t", b) +
              c_array("bias", "int32_t", bias) + f"static int8_t C[{m}][{n}];\n" + f"""
int main(void) {{
  union {{ uint32_t bits; float value; }} scale = {{ {bits}u }};
  gemmini_flush(0);
  gemmini_extended_config_ex(WEIGHT_STATIONARY, 0, 0, 1, 0, 0);
  GEMMINI_CONFIG_LD({k}, 0);
  GEMMINI_CONFIG_LD({n}, 1);
  GEMMINI_CONFIG_LD(0, 2);
  gemmini_extended_config_st({n}, {int(relu)}, scale.value);
  gemmini_loop_ws({I}, {J}, {K}, {pad_i}, {pad_j}, {pad_k}, A, B, bias, C, {k}, {n}, 0, {n},
                  0, 0, 0, 0, 1, {int(relu)}, 0, 0, 0);
  gemmini_fence();
#ifdef TVM_COSA_MODEL
  if (gemmini_status()) {{ printf("ERROR %s\\\\n", gemmini_error_message()); return 1; }}
#endif
  printf("BEGIN\\n");
  for (int i = 0; i < {m}; i++) for (int j = 0; j < {n}; j++) printf("%d\\n", C[i][j]);
  printf("END\\n");
  return 0;
}}
""")
    return source, (a, b, bias)


@settings(max_examples=5, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(blocks=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       pads=st.tuples(st.integers(0, 15), st.integers(0, 15), st.integers(0, 15)),
       relu=st.booleans(), scale=st.sampled_from([2.0 ** -12, 0.000317, 0.0041]),
       seed=st.integers(0, 1000))
def test_loop_ws_with_a_repeating_bias_and_scaled_int8_c_matches_libgemmini(
        tmp_path_factory, blocks, pads, relu, scale, seed):
    source, (a, b, bias) = scaled_loop_ws_program(np.random.default_rng(seed), *blocks, pads,
                                                  relu, np.float32(scale))
    want = Requant(float(np.float32(scale)), relu).apply(
        (a @ b + bias).astype(np.int64).astype(np.int32))
    folder = tmp_path_factory.mktemp("loop_ws")
    model = run_on_model(source, folder / "model", GemminiConfig())
    assert np.array_equal(np.array(model.split(), np.int64).reshape(want.shape), want)
    if SPIKE_MISSING is None:
        assert run_on_spike(source, folder / "spike") == model
