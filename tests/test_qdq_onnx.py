"""QDQ ONNX models (what onnxruntime's quantizer writes) fused into QLinearConv / QLinearMatMul at
import (tvm_cosa.relax.onnx_qdq), run on Gemmini's int8 array and equal to onnxruntime, which
fuses the same groups, bit for bit; groups that are not exact stay float operators."""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

tvm = pytest.importorskip("tvm")

from tvm_cosa.relax.extract import extract  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime, run_tvm  # noqa: E402
from tvm_cosa.relax.onnx_qdq import fuse_qdq  # noqa: E402

ONNX_TYPE = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}


class QDQ:
    """Builds a QDQ model as onnxruntime's quantizer writes it: float input, QuantizeLinear,
    then DequantizeLinear -> float operator -> QuantizeLinear groups with constant int8 weights,
    int32 biases and their scales."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.count = [], [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}{self.count}"

    def const(self, value, stem="c"):
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, stem, **attrs):
        out = self.name(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def input(self, name, shape):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def quantize(self, x, scale, zp, dtype):
        return self.node("QuantizeLinear", [x, self.const(np.float32(scale), "s"),
                                            self.const(np.array(zp, dtype), "z")], "q")

    def dequantize(self, q, scale, zp, dtype=None, axis=None):
        inputs = [q, self.const(np.asarray(scale, np.float32), "s")]
        if zp is not None:
            inputs.append(self.const(np.asarray(zp, dtype), "z"))
        attrs = {} if axis is None else {"axis": axis}
        return self.node("DequantizeLinear", inputs, "dq", **attrs)

    def weights(self, shape, per_channel, axis):
        # 7-bit, as quantize_static(reduce_range=True) writes them: onnxruntime's u8s8 kernel on
        # AVX2 CPUs without VNNI saturates pairs of larger products (see onnx_qops)
        w = self.rng.integers(-64, 65, shape).astype(np.int8)
        channels = shape[axis]
        scale = (self.rng.uniform(0.002, 0.006, channels) if per_channel
                 else np.float32(0.004)).astype(np.float32)
        return w, scale

    def conv(self, x, x_scale, cin, cout, *, per_channel=False, bias=True, relu=False, k=3,
             stride=1):
        """DQ(w) [DQ(bias)] -> Conv [-> Relu] on the dequantized input `x`."""
        w, w_scale = self.weights((cout, cin, k, k), per_channel, 0)
        inputs = [x, self.dequantize(self.const(w, "w"), w_scale, np.zeros(w_scale.shape,
                                                                             np.int8),
                                     axis=0 if per_channel else None)]
        if bias:
            b_scale = (np.float32(x_scale) * w_scale).astype(np.float32)
            b = self.rng.integers(-2000, 2000, cout).astype(np.int32)
            inputs.append(self.dequantize(self.const(b, "b"), b_scale, None,
                                          axis=0 if per_channel else None))
        y = self.node("Conv", inputs, "conv", pads=[k // 2] * 4, strides=[stride] * 2)
        return self.node("Relu", [y], "relu") if relu else y

    def model(self, outputs, out_types):
        graph = helper.make_graph(self.nodes, "qdq", self.inputs,
                                  [helper.make_empty_tensor_value_info(o) for o in outputs],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        # output types and shapes from onnx's inference (TVM's importer warns without them)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output
        assert [v.type.tensor_type.elem_type for v in inferred] == list(out_types)
        model.graph.ClearField("output")
        model.graph.output.extend(inferred)
        return model


def ops(model):
    return [n.op_type for n in model.graph.node]


def onnxruntime_fused_ops(model, tmp_path):
    """Operator types of the graph onnxruntime runs (default session options: QDQ fused)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "ort_optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return ops(onnx.load(options.optimized_model_filepath))


def verify(tmp_path, model, *args):
    """`tvm-cosa verify` (the Gemmini flow: import, GemminiPrepare, CoSAPass for the matched
    configuration, build, functional model, comparison with onnxruntime)."""
    from click.testing import CliRunner

    from tvm_cosa.cli import main

    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return CliRunner().invoke(main, ["verify", str(path), "--no-cache", *args])


def assert_exact_on_gemmini(tmp_path, model, layers):
    result = verify(tmp_path, model)
    assert result.exit_code == 0, result.output
    assert f"on the Gemmini array: {layers} of {layers}" in result.output
    assert f"{layers} operators on gemmini (int8)" in result.output
    assert "max abs error 0 (exact)" in result.output
    assert "MISMATCH" not in result.output
    return result.output


def mac_dtypes(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = import_onnx(model)
    return {(op.kind, op.dtype, op.out_dtype) for op in extract(mod)}


# ---- single groups -------------------------------------------------------------------------------
def single_conv(per_channel, act_type, x_zp, y_zp, relu):
    b = QDQ(seed=1 if per_channel else 2)
    x = b.quantize(b.input("x", (1, 8, 10, 10)), 0.02, x_zp, act_type)
    y = b.conv(b.dequantize(x, 0.02, x_zp, act_type), 0.02, 8, 16, per_channel=per_channel,
               relu=relu)
    y = b.quantize(y, 0.03, y_zp, act_type)
    return b.model([y], [ONNX_TYPE[act_type]])


@pytest.mark.parametrize("per_channel, relu", [(False, False), (True, True)])
def test_qdq_conv_becomes_qlinear_conv_on_the_gemmini_array_exactly(per_channel, relu,
                                                                      tmp_path):
    """uint8 activations, int8 weights (onnxruntime quantizer's default): per-tensor weight
    scale with asymmetric zero points, or per-channel scales and a Relu made redundant by Q."""
    model = single_conv(per_channel, np.uint8, 120 if not relu else 128, 131 if not relu else 0,
                        relu)
    fused = fuse_qdq(model)
    # left: the input's QuantizeLinear; the DQs, the Conv, the Relu and the Q are one operator
    assert ops(fused.model) == ["QuantizeLinear", "QLinearConv"]
    assert [op for _, op in fused.fused] == ["QLinearConv"]
    assert "QLinearConv" in onnxruntime_fused_ops(model, tmp_path)  # onnxruntime fuses it too
    # the rewritten model is valid ONNX: onnxruntime runs it, with the same result
    feed = {"x": np.random.default_rng(0).standard_normal((1, 8, 10, 10)).astype(np.float32)}
    np.testing.assert_array_equal(run_onnxruntime(fused.model, feed)[0],
                                  run_onnxruntime(model, feed)[0])
    assert mac_dtypes(model) == {("conv2d", "int8", "int32")}
    assert_exact_on_gemmini(tmp_path, model, 1)


def test_int8_activation_conv_equals_onnxruntime_qlinear_conv_on_gemmini():
    """int8 activations: fused as well. onnxruntime on x86 keeps such groups float (it allows
    int8 activations in its QDQ fusion only on some CPUs), so the reference is onnxruntime's
    QLinearConv on the fused graph (exact) and its float QDQ path (within one step)."""
    from tvm_cosa.target.gemmini import flow

    model = single_conv(True, np.int8, 0, -128, True)
    fused = fuse_qdq(model)
    assert ops(fused.model) == ["QuantizeLinear", "QLinearConv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = flow.compile_module(import_onnx(model), "gemmini", cache=False)
    assert compiled.config.dtype == "int8"
    assert [r.lowering for r in compiled.report.records] == ["gemmini"]
    feed = {"x": np.random.default_rng(1).standard_normal((1, 8, 10, 10)).astype(np.float32)}
    got = flow.load(compiled.mod, compiled.config)(feed)[0]
    np.testing.assert_array_equal(got, run_onnxruntime(fused.model, feed)[0])
    qdq = run_onnxruntime(model, feed)[0]
    assert np.abs(got.astype(int) - qdq.astype(int)).max() <= 1


def test_qdq_matmul_with_per_column_scales_becomes_qlinear_matmul_exactly(tmp_path):
    b = QDQ(seed=3)
    a = b.quantize(b.input("a", (16, 64)), 0.025, 131, np.uint8)
    w, w_scale = b.weights((64, 24), per_channel=True, axis=1)
    y = b.node("MatMul", [b.dequantize(a, 0.025, 131, np.uint8),
                          b.dequantize(b.const(w, "w"), w_scale, np.zeros(24, np.int8), axis=1)],
               "matmul")
    model = b.model([b.quantize(y, 0.06, 120, np.uint8)], [TensorProto.UINT8])
    fused = fuse_qdq(model)
    assert ops(fused.model) == ["QuantizeLinear", "QLinearMatMul"]
    assert "QLinearMatMul" in onnxruntime_fused_ops(model, tmp_path)
    assert mac_dtypes(model) == {("matmul", "int8", "int32")}
    assert_exact_on_gemmini(tmp_path, model, 1)


# ---- a small QDQ CNN -----------------------------------------------------------------------------
def qdq_cnn():
    """Four QDQ convolutions (uint8 activations, per-channel int8 weights), Relus folded into
    their quantization, and a residual Add (followed by a Relu its Q does not make redundant,
    so onnxruntime leaves it float too)."""
    b = QDQ(seed=4)
    u8 = np.uint8
    x = b.quantize(b.input("x", (1, 3, 16, 16)), 0.02, 128, u8)
    t1 = b.quantize(b.conv(b.dequantize(x, 0.02, 128, u8), 0.02, 3, 8, per_channel=True,
                           relu=True), 0.02, 0, u8)
    t2 = b.quantize(b.conv(b.dequantize(t1, 0.02, 0, u8), 0.02, 8, 8, per_channel=True,
                           relu=True), 0.02, 0, u8)
    t3 = b.quantize(b.conv(b.dequantize(t2, 0.02, 0, u8), 0.02, 8, 8, per_channel=True),
                    0.03, 120, u8)
    added = b.node("Add", [b.dequantize(t1, 0.02, 0, u8), b.dequantize(t3, 0.03, 120, u8)],
                   "add")
    t4 = b.quantize(b.node("Relu", [added], "relu"), 0.03, 10, u8)
    y = b.quantize(b.conv(b.dequantize(t4, 0.03, 10, u8), 0.03, 8, 16, per_channel=True,
                          stride=2), 0.05, 100, u8)
    return b.model([y], [TensorProto.UINT8])


def test_qdq_cnn_with_residual_add_runs_every_conv_on_gemmini_exactly(tmp_path):
    model = qdq_cnn()
    fused = fuse_qdq(model)
    assert [op for _, op in fused.fused] == ["QLinearConv"] * 4
    assert ops(fused.model).count("QLinearConv") == 4
    assert "Conv" not in ops(fused.model)
    assert "Add" in ops(fused.model)  # the float residual Add and its Q/DQ are kept
    assert onnxruntime_fused_ops(model, tmp_path).count("QLinearConv") == 4
    assert_exact_on_gemmini(tmp_path, model, 4)


# ---- groups that are not exact stay as they are --------------------------------------------------
def test_conv_whose_output_is_also_used_elsewhere_is_not_fused(tmp_path):
    """The float Conv output feeds its Q and also a graph output: neither we nor onnxruntime
    fuse it, and TVM's float result equals onnxruntime's within float tolerance."""
    b = QDQ(seed=5)
    x = b.quantize(b.input("x", (1, 8, 10, 10)), 0.02, 0, np.int8)
    conv = b.conv(b.dequantize(x, 0.02, 0, np.int8), 0.02, 8, 8)
    y = b.quantize(conv, 0.03, 0, np.int8)
    model = b.model([y, conv], [TensorProto.INT8, TensorProto.FLOAT])
    assert fuse_qdq(model).model is model and fuse_qdq(model).fused == []
    assert "QLinearConv" not in onnxruntime_fused_ops(model, tmp_path)
    assert mac_dtypes(model) == {("conv2d", "float32", "float32")}
    feed = {"x": np.random.default_rng(0).standard_normal((1, 8, 10, 10)).astype(np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = run_tvm(tvm.compile(import_onnx(model), target="llvm"), feed)
    want = run_onnxruntime(model, feed)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-4 * np.abs(want[1]).max())
    assert np.abs(got[0].astype(int) - want[0].astype(int)).max() <= 1


def test_dequantized_input_shared_with_an_add_is_fused_and_kept_for_the_add(tmp_path):
    """A DQ read by the Conv and by a float Add: onnxruntime gives each consumer its own DQ and
    fuses the Conv; so do we (the DQ stays for the Add). Both outputs exact."""
    b = QDQ(seed=7)
    x = b.quantize(b.input("x", (1, 4, 6, 6)), 0.02, 128, np.uint8)
    xd = b.dequantize(x, 0.02, 128, np.uint8)
    y = b.quantize(b.conv(xd, 0.02, 4, 4), 0.03, 128, np.uint8)
    # Add -> Relu -> Q with a zero point above the minimum: onnxruntime keeps the Add float
    # (a DQ-Add-Q group would become its QLinearAdd: onnx_qops' table, tests/test_qdq_ops.py)
    added = b.node("Add", [xd, b.dequantize(y, 0.03, 128, np.uint8)], "add")
    s = b.quantize(b.node("Relu", [added], "relu"), 0.04, 128, np.uint8)
    model = b.model([s, y], [TensorProto.UINT8, TensorProto.UINT8])
    fused = fuse_qdq(model)
    assert ops(fused.model).count("QLinearConv") == 1 and "Conv" not in ops(fused.model)
    assert ops(fused.model).count("DequantizeLinear") == 2  # the Add's two inputs
    assert "QLinearConv" in onnxruntime_fused_ops(model, tmp_path)
    out = assert_exact_on_gemmini(tmp_path, model, 1)
    assert "output 1 (uint8): max abs error 0 (exact)" in out


@pytest.mark.parametrize("case", ["bias scale", "int8 x uint8 w", "relu kept", "per-axis x"])
def test_inexact_groups_are_left_untouched(case):
    b = QDQ(seed=6)
    x = b.quantize(b.input("x", (1, 4, 6, 6)), 0.02, 0, np.int8)
    xd = b.dequantize(x, 0.02, 0, np.int8)
    w = b.const(np.ones((4, 4, 1, 1), np.int8), "w")
    if case == "bias scale":  # the int32 bias is not on the accumulator's scale
        bias = b.dequantize(b.const(np.arange(4, dtype=np.int32), "b"), 0.5, None)
        y = b.node("Conv", [xd, b.dequantize(w, 0.01, 0, np.int8), bias], "conv")
    elif case == "int8 x uint8 w":  # onnxruntime's rule: int8 activations need int8 weights
        w = b.const(np.full((4, 4, 1, 1), 200, np.uint8), "w")
        y = b.node("Conv", [xd, b.dequantize(w, 0.01, 128, np.uint8)], "conv")
    elif case == "relu kept":  # a Relu the quantization does not make redundant
        y = b.conv(xd, 0.02, 4, 4, relu=True)
    else:  # the activation's scale per channel: QLinearConv takes only a scalar x_scale
        xd = b.dequantize(x, np.full(4, 0.02), np.zeros(4), np.int8, axis=1)
        y = b.node("Conv", [xd, b.dequantize(w, 0.01, 0, np.int8)], "conv")
    zp = 5 if case == "relu kept" else 0  # above the minimum -128: the Relu matters
    model = b.model([b.quantize(y, 0.03, zp, np.int8)], [TensorProto.INT8])
    fused = fuse_qdq(model)
    assert fused.model is model and fused.fused == []
    assert "Conv" in ops(fused.model)
