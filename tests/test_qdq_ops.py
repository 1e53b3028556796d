"""Float models quantized by onnxruntime's quantize_static, compiled for Gemmini, equal to
onnxruntime bit for bit: its QLinearConv, QLinearAdd, QGemm, QLinearGlobalAveragePool and the
float BatchNormalization it leaves between DequantizeLinear and QuantizeLinear
(tvm_cosa.relax.onnx_qdq + onnx_qops)."""

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")
tvm = pytest.importorskip("tvm")

from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime  # noqa: E402
from tvm_cosa.relax.onnx_qdq import _Quant, fuse_qdq  # noqa: E402
from tvm_cosa.relax.onnx_qops import (exactness_notes, host_add_kernel,  # noqa: E402
                                      qlinear_add_table, rewrite_quantized_ops)
from tvm_cosa.relax.report import Report  # noqa: E402

SHAPE = (1, 4, 12, 12)


def float_cnn(seed=0):
    """Conv-BN-Relu, MaxPool, Conv-BN, residual Add, Relu, GlobalAveragePool, Flatten, Gemm."""
    rng = np.random.default_rng(seed)
    inits = []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def bn(x, c, name):
        stats = [const(f"{name}_s", rng.uniform(0.5, 1.5, c)),
                 const(f"{name}_b", rng.normal(0, 0.2, c)),
                 const(f"{name}_m", rng.normal(0, 0.2, c)),
                 const(f"{name}_v", rng.uniform(0.5, 2, c))]
        return helper.make_node("BatchNormalization", [x, *stats], [name])

    nodes = [
        helper.make_node("Conv", ["x", const("w1", rng.normal(0, 0.3, (8, 4, 3, 3)))], ["c1"],
                         pads=[1] * 4),
        bn("c1", 8, "b1"), helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", const("w2", rng.normal(0, 0.2, (8, 8, 3, 3)))], ["c2"],
                         pads=[1] * 4),
        bn("c2", 8, "b2"), helper.make_node("Add", ["b2", "p1"], ["a"]),
        helper.make_node("Relu", ["a"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", const("wf", rng.normal(0, 0.3, (10, 8))),
                                  const("bf", rng.normal(0, 0.1, 10))], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", 1, SHAPE)],
                              [helper.make_tensor_value_info("y", 1, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


class Calibration(quantization.CalibrationDataReader):
    def __init__(self, count=4, seed=0):
        rng = np.random.default_rng(seed)
        self.data = iter([{"x": rng.standard_normal(SHAPE).astype(np.float32)}
                          for _ in range(count)])

    def get_next(self):
        return next(self.data, None)


def quantized(tmp_path, activations, per_channel, reduce_range=False,
              fmt="QDQ", symmetric=False):
    source, target = tmp_path / "float.onnx", tmp_path / f"q_{activations}_{per_channel}.onnx"
    onnx.save(float_cnn(), source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantization.quantize_static(
            str(source), str(target), Calibration(),
            quant_format=getattr(quantization.QuantFormat, fmt),
            activation_type=getattr(quantization.QuantType, activations),
            weight_type=quantization.QuantType.QInt8, per_channel=per_channel,
            reduce_range=reduce_range, extra_options={"ActivationSymmetric": symmetric})
    return onnx.load(target)


def feeds(count=3):
    return [{"x": np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)}
            for seed in range(count)]


def test_qlinear_add_table_equals_onnxruntime_on_every_pair():
    """All 65536 pairs of uint8 / int8 inputs through onnxruntime's QLinearAdd (a DQ-Add-Q
    model: onnxruntime fuses it) equal the table."""
    rng = np.random.default_rng(0)
    for dtype, elem in ((np.uint8, TensorProto.UINT8), (np.int8, TensorProto.INT8)):
        info = np.iinfo(dtype)
        zps = [dtype(rng.integers(info.min, info.max)) for _ in range(3)]
        scales = [np.float32(rng.uniform(0.005, 0.05)) for _ in range(3)]
        inits = [numpy_helper.from_array(np.asarray(v), n) for v, n in
                 zip([*scales, *zps], ["sa", "sb", "sy", "za", "zb", "zy"])]
        nodes = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["da"]),
                 helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["db"]),
                 helper.make_node("Add", ["da", "db"], ["s"]),
                 helper.make_node("QuantizeLinear", ["s", "sy", "zy"], ["y"])]
        graph = helper.make_graph(nodes, "add", [helper.make_tensor_value_info(n, elem, [256, 256])
                                                 for n in "ab"],
                                  [helper.make_tensor_value_info("y", elem, [256, 256])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        values = np.arange(info.min, info.max + 1).astype(dtype)
        a, b = np.meshgrid(values, values, indexing="ij")
        want = run_onnxruntime(model, {"a": a, "b": b})[0]
        quants = [_Quant(None, "", elem, np.asarray(s), np.asarray(z), 1)
                  for s, z in zip(scales, zps)]
        np.testing.assert_array_equal(qlinear_add_table(*quants, host_add_kernel()), want)


@pytest.mark.parametrize("activations, per_channel, fmt, symmetric", [
    ("QUInt8", False, "QDQ", False), ("QUInt8", True, "QDQ", False), ("QInt8", False, "QDQ", False),
    ("QInt8", True, "QDQ", True), ("QUInt8", False, "QDQ", True),
    ("QUInt8", False, "QOperator", False)])
def test_rewritten_model_equals_the_quantized_model_in_onnxruntime(tmp_path, activations,
                                                                  per_channel, fmt, symmetric):
    """The rewrite is ONNX (our two operators are ONNX functions): onnxruntime runs it and gets
    the same outputs as on the model the quantizer wrote (asymmetric and symmetric
    activations)."""
    model = quantized(tmp_path, activations, per_channel, reduce_range=True, fmt=fmt,
                      symmetric=symmetric)
    result = rewrite_quantized_ops(fuse_qdq(model).model)
    kinds = {what for _, what in result.rewritten}
    assert {"QLinearAdd table", "QGemm"} <= kinds
    if fmt == "QDQ":
        assert {"elementwise table", "QLinearGlobalAveragePool"} <= kinds
    onnx.checker.check_model(result.model)
    for feed in feeds():
        np.testing.assert_array_equal(run_onnxruntime(result.model, feed)[0],
                                      run_onnxruntime(model, feed)[0])


@pytest.mark.parametrize("per_channel, fmt, symmetric", [
    (False, "QDQ", False), (True, "QDQ", False), (True, "QDQ", True), (False, "QOperator", False)])
def test_quantize_static_cnn_on_gemmini_equals_onnxruntime_exactly(tmp_path, per_channel, fmt,
                                                                   symmetric):
    """uint8 activations (the quantizer's default), 7-bit weights (reduce_range: onnxruntime's
    u8s8 AVX2 kernel then never saturates), per tensor / per channel, asymmetric / symmetric
    activations, QDQ and QOperator format:
    every conv and the Gemm on the array, the output equal to onnxruntime's, no exactness note."""
    from tvm_cosa.target.gemmini import flow

    model = quantized(tmp_path, "QUInt8", per_channel, reduce_range=True, fmt=fmt,
                      symmetric=symmetric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = flow.compile_module(import_onnx(model), "gemmini", cache=False,
                                       progress=False)
    assert compiled.config.dtype == "int8"
    assert [r.lowering for r in compiled.report.records] == ["gemmini"] * 3
    assert compiled.report.exactness_notes == []
    runner = flow.load(compiled.mod, compiled.config)
    for feed in feeds():
        np.testing.assert_array_equal(runner(feed)[0], run_onnxruntime(model, feed)[0])


def imported_form(model):
    return rewrite_quantized_ops(fuse_qdq(model).model).model


def test_exactness_notes_name_each_cause_and_reach_the_report(tmp_path):
    """8-bit weights with uint8 activations on a CPU without VNNI: onnxruntime's saturating u8s8
    kernel; int8 activations: its float32 groups on x86; 7-bit weights: nothing to say."""
    eight_bit = exactness_notes(imported_form(quantized(tmp_path, "QUInt8", True)), vnni=False)
    assert len(eight_bit) == 1 and "saturating int16" in eight_bit[0]
    assert "reduce_range=True" in eight_bit[0]
    assert exactness_notes(imported_form(quantized(tmp_path, "QUInt8", True)), vnni=True) == []
    seven_bit = quantized(tmp_path, "QUInt8", True, reduce_range=True)
    assert exactness_notes(imported_form(seven_bit), vnni=False) == []
    int8 = exactness_notes(imported_form(quantized(tmp_path, "QInt8", False, reduce_range=True)),
                           vnni=False)
    if __import__("platform").machine().lower() in ("x86_64", "amd64"):
        assert any("int8 activations" in note for note in int8)
    table = Report(arch="gemmini", exactness_notes=eight_bit).table()
    assert f"may differ from onnxruntime: {eight_bit[0]}" in table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = import_onnx(quantized(tmp_path, "QUInt8", True))
    from tvm_cosa.relax.report import module_exactness_notes
    assert module_exactness_notes(mod) == exactness_notes(
        imported_form(quantized(tmp_path, "QUInt8", True)))


def test_a_quantized_softmax_is_named_as_onnxruntime_fuses_it(tmp_path):
    """The classifier's Softmax of a quantize_static model: onnxruntime runs the DQ-Softmax-Q
    group as its QLinearSoftmax (checked in its optimized graph), which rounds its own way; the
    rewrite keeps the float Softmax, so the notes say so."""
    model = float_cnn()
    model.graph.node.append(helper.make_node("Softmax", ["y"], ["probabilities"]))
    model.graph.output[0].name = "probabilities"
    source, target = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(model, source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantization.quantize_static(str(source), str(target), Calibration(),
                                     quant_format=quantization.QuantFormat.QDQ,
                                     reduce_range=True)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    fused = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
    assert "QLinearSoftmax" in fused
    notes = exactness_notes(imported_form(onnx.load(target)), vnni=True)
    assert any("QLinearSoftmax" in note for note in notes)
    # without the Softmax the same model has nothing to say
    assert exactness_notes(imported_form(quantized(tmp_path, "QUInt8", False,
                                                   reduce_range=True)), vnni=True) == []


def float_mlp_block(seed=1, tokens=16, width=32):
    """A transformer-like feed-forward block: MatMul, bias Add, Relu, MatMul, bias Add, residual
    Add."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, s, shape).astype(np.float32), name)
             for name, shape, s in [("w1", (width, 2 * width), 0.2), ("b1", (2 * width,), 0.1),
                                    ("w2", (2 * width, width), 0.2), ("b2", (width,), 0.1)]]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["o"]),
             helper.make_node("Add", ["o", "b2"], ["ob"]),
             helper.make_node("Add", ["ob", "x"], ["y"])]
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("x", 1, [tokens, width])],
                              [helper.make_tensor_value_info("y", 1, [tokens, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_quantize_static_mlp_block_on_gemmini_equals_onnxruntime_exactly(tmp_path):
    """Both matmuls on the array; the bias and residual Adds are onnxruntime's QLinearAdd."""
    from tvm_cosa.target.gemmini import flow

    source, target = tmp_path / "mlp.onnx", tmp_path / "mlp_q.onnx"
    onnx.save(float_mlp_block(), source)

    class Tokens(quantization.CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.data = iter([{"x": rng.standard_normal((16, 32)).astype(np.float32)}
                              for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantization.quantize_static(str(source), str(target), Tokens(), per_channel=True,
                                     reduce_range=True,
                                     activation_type=quantization.QuantType.QUInt8)
        model = onnx.load(target)
        compiled = flow.compile_module(import_onnx(model), "gemmini", cache=False,
                                       progress=False)
    kinds = [what for _, what in rewrite_quantized_ops(fuse_qdq(model).model).rewritten]
    assert kinds.count("QLinearAdd table") == 3
    assert [(r.op, r.lowering) for r in compiled.report.records] == [("matmul", "gemmini")] * 2
    assert compiled.report.exactness_notes == []
    runner = flow.load(compiled.mod, compiled.config)
    for seed in range(3):
        feed = {"x": np.random.default_rng(seed).standard_normal((16, 32)).astype(np.float32)}
        np.testing.assert_array_equal(runner(feed)[0], run_onnxruntime(model, feed)[0])
