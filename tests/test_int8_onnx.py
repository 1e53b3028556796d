"""ONNX integer operators through TVM's importer (tvm_cosa.relax.onnx_int8) equal to onnxruntime
bit for bit, and the int8 ResNet-18 compiled for Gemmini, run on its functional model, exact."""

import warnings

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

tvm = pytest.importorskip("tvm")

from tvm_cosa.errors import InputError  # noqa: E402
from tvm_cosa.models import (bert_encoder_int8, input_feed, mobilenet_v2_int8,  # noqa: E402
                             resnet18_int8, resnet50_int8)
from tvm_cosa.models.int8 import activation_names, conv_int  # noqa: E402
from tvm_cosa.relax import onnx_int8  # noqa: E402
from tvm_cosa.relax.extract import extract  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime, run_tvm  # noqa: E402

ONNX_TYPE = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8,
             np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32}


# ---- single-operator models ----------------------------------------------------------------------
def single_op(op, feed, consts, out_type, opset=17, **attrs):
    """A model of one node: `feed` arrays are graph inputs, `consts` initializers, in the node's
    input order (feed first, then consts, as given)."""
    inputs = [helper.make_tensor_value_info(name, ONNX_TYPE[x.dtype.type], list(x.shape))
              for name, x in feed.items()]
    inits = [numpy_helper.from_array(np.asarray(x), name) for name, x in consts.items()]
    names = [*feed, *consts]
    graph = helper.make_graph([helper.make_node(op, names, ["y"], **attrs)], op, inputs,
                              [helper.make_tensor_value_info("y", out_type, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run_tvm_llvm(model, feed):
    with warnings.catch_warnings():  # onnx.checker: outputs without a shape
        warnings.simplefilter("ignore")
        mod = import_onnx(model)
    return run_tvm(tvm.compile(mod, target="llvm"), feed)[0], mod


def assert_same_as_onnxruntime(model, feed):
    got, mod = run_tvm_llvm(model, feed)
    want = run_onnxruntime(model, feed)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    return mod


def ints(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def mac_dtypes(mod):
    return {(op.kind, op.dtype, op.out_dtype) for op in extract(mod)}


# ---- ConvInteger ---------------------------------------------------------------------------------
CONV_CASES = [  # x type, w type, x zero point, w zero point, groups
    (np.int8, np.int8, None, None, 1),
    (np.int8, np.int8, 5, None, 2),
    (np.uint8, np.int8, 128, None, 1),
    (np.uint8, np.int8, 37, None, 1),
    (np.uint8, np.uint8, 3, 131, 1),  # w - 131 fits int8: folded into the weights
    (np.uint8, np.uint8, 200, 100, 2),  # w - 100 does not: zero point kept, window sums
    (np.int8, np.int8, -7, -2, 1),
    (np.int8, np.uint8, 0, 255, 8),
]


@pytest.mark.parametrize("xt, wt, xz, wz, groups", CONV_CASES)
def test_conv_integer_matches_onnxruntime_on_int8_operands(xt, wt, xz, wz, groups):
    rng = np.random.default_rng(groups)
    x, w = ints(rng, xt, (1, 8, 9, 9)), ints(rng, wt, (8, 8 // groups, 3, 3))
    consts = {"w": w}
    if xz is not None or wz is not None:
        consts["xz"] = np.array(xz or 0, xt)
    if wz is not None:
        consts["wz"] = np.array(wz, wt)
    model = single_op("ConvInteger", {"x": x}, consts, TensorProto.INT32, pads=[1, 2, 0, 1],
                      strides=[2, 1], group=groups)
    want = conv_integer_reference(x, w, xz or 0, 0 if wz is None else wz, pads=(1, 2, 0, 1),
                                  strides=(2, 1), groups=groups)
    mod = assert_conv_integer_exact(model, x, want)
    # every multiply-accumulate is int8 x int8 -> int32: the operands Gemmini takes
    assert mac_dtypes(mod) == {("conv2d", "int8", "int32")}


def test_conv_integer_auto_pad_and_dilation():
    rng = np.random.default_rng(3)
    x, w = ints(rng, np.uint8, (2, 4, 10, 7)), ints(rng, np.int8, (6, 4, 3, 2))
    for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        model = single_op("ConvInteger", {"x": x}, {"w": w, "xz": np.array(9, np.uint8)},
                          TensorProto.INT32, auto_pad=auto_pad, strides=[2, 3],
                          dilations=[1, 2] if auto_pad == "VALID" else [1, 1])
        assert_same_as_onnxruntime(model, {"x": x})


def conv_integer_reference(x, w, x_zp, w_zp, *, pads, strides, groups, dilations=(1, 1)):
    """ONNX ConvInteger by its definition: x padded with its zero point (pads: top, left, bottom,
    right), zero points subtracted, a grouped, dilated convolution in int64."""
    top, left, bottom, right = pads
    xs = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (top, bottom), (left, right)),
                constant_values=int(x_zp)) - int(x_zp)
    ws = w.astype(np.int64) - int(w_zp)
    (dh, dw), (r, s) = dilations, ws.shape[2:]
    span = ((r - 1) * dh + 1, (s - 1) * dw + 1)
    windows = np.lib.stride_tricks.sliding_window_view(xs, span, axis=(2, 3))
    windows = windows[:, :, ::strides[0], ::strides[1], ::dh, ::dw]  # N, C, P, Q, R, S
    cg, kg = ws.shape[1], ws.shape[0] // groups
    outs = [np.einsum("ncpqrs,kcrs->nkpq", windows[:, g * cg:(g + 1) * cg],
                      ws[g * kg:(g + 1) * kg]) for g in range(groups)]
    return np.concatenate(outs, axis=1).astype(np.int32)


def assert_conv_integer_exact(model, x, want):
    """TVM equals the ONNX definition (`want`, numpy) and onnxruntime wherever onnxruntime does.
    onnxruntime departs from the definition only on operands of mixed signedness: its x86 kernels
    without VNNI multiply uint8 by int8 with VPMADDUBSW, whose int16 pair sums saturate."""
    got, mod = run_tvm_llvm(model, {"x": x})
    np.testing.assert_array_equal(got, want)
    ort = run_onnxruntime(model, {"x": x})[0]
    if np.array_equal(ort, want):
        np.testing.assert_array_equal(got, ort)
    else:
        w_type = model.graph.initializer[0].data_type
        assert (x.dtype == np.uint8) != (w_type == TensorProto.UINT8), \
            "onnxruntime departs from the ONNX definition on operands of one signedness"
        warnings.warn("onnxruntime differs from the ONNX ConvInteger definition on mixed-sign "
                      "operands (saturating uint8 x int8 kernel); checked against numpy only")
    return mod


def weights(rng, w_type, x_type, shape):
    """Random weights; 7-bit when uint8 activations meet int8 weights, the range onnxruntime's
    quantizer uses (reduce_range) so that its saturating uint8 x int8 x86 kernel is exact."""
    if x_type == np.uint8 and w_type == np.int8:
        return rng.integers(-64, 64, shape).astype(np.int8)
    return ints(rng, w_type, shape)


def conv_reference(x, w, x_zp, w_zp, pad):
    """conv(x - x_zp, w - w_zp) with x padded by its zero point (ONNX), groups 1, stride 1."""
    xs = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)),
                constant_values=int(x_zp)) - int(x_zp)
    ws = w.astype(np.int64) - np.asarray(w_zp, np.int64).reshape(-1, 1, 1, 1)
    return conv_int(xs, ws, 1, 0)


def test_conv_integer_per_channel_weight_zero_point_matches_numpy():
    """onnxruntime's ConvInteger refuses per-channel zero points; the ONNX semantics are clear."""
    rng = np.random.default_rng(4)
    x, w = ints(rng, np.uint8, (1, 5, 6, 6)), ints(rng, np.uint8, (7, 5, 3, 3))
    w_zp = rng.integers(0, 256, 7).astype(np.uint8)
    model = single_op("ConvInteger", {"x": x}, {"w": w, "xz": np.array(77, np.uint8),
                                                "wz": w_zp}, TensorProto.INT32, pads=[1] * 4)
    got, mod = run_tvm_llvm(model, {"x": x})
    np.testing.assert_array_equal(got, conv_reference(x, w, 77, w_zp, 1))
    assert mac_dtypes(mod) == {("conv2d", "int8", "int32")}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_conv_integer_layers_match_onnxruntime(data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 5)), groups * draw(st.integers(1, 4))
    k, stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    size = draw(st.integers((k - 1) * dilation + 1, 9))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    xt, wt = draw(st.sampled_from([np.int8, np.uint8])), draw(st.sampled_from([np.int8, np.uint8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, w = ints(rng, xt, (1, cin, size, size)), ints(rng, wt, (cout, cin // groups, k, k))
    zp = {"xz": ints(rng, xt, ()), "wz": ints(rng, wt, ())}
    model = single_op("ConvInteger", {"x": x}, {"w": w, **zp}, TensorProto.INT32, pads=pads,
                      strides=[stride] * 2, dilations=[dilation] * 2, group=groups)
    top, left, bottom, right = pads[0], pads[1], pads[2], pads[3]
    want = conv_integer_reference(x, w, zp["xz"], zp["wz"], pads=(top, left, bottom, right),
                                  strides=(stride, stride), groups=groups,
                                  dilations=(dilation, dilation))
    mod = assert_conv_integer_exact(model, x, want)
    assert {d for _, d, _ in mac_dtypes(mod)} == {"int8"}


def test_conv_integer_with_weights_or_zero_points_as_inputs_falls_back_to_int32():
    """Not constants: the zero points cannot be folded or shifted at import, so the layer is an
    exact int32 convolution of widened operands (it runs on the CPU)."""
    rng = np.random.default_rng(14)
    x, w = ints(rng, np.uint8, (1, 3, 7, 7)), ints(rng, np.uint8, (4, 3, 3, 3))
    # 1-element zero points: run_tvm feeds through np.ascontiguousarray, which makes 0-D 1-D
    feed = {"x": x, "w": w, "xz": np.array([140], np.uint8), "wz": np.array([9], np.uint8)}
    model = single_op("ConvInteger", feed, {}, TensorProto.INT32, pads=[1] * 4)
    mod = assert_same_as_onnxruntime(model, feed)
    assert mac_dtypes(mod) == {("conv2d", "int32", "int32")}


def test_matmul_integer_of_a_vector_falls_back_to_int32():
    rng = np.random.default_rng(15)
    a, b = ints(rng, np.int8, (24,)), ints(rng, np.uint8, (24, 6))
    model = single_op("MatMulInteger", {"a": a}, {"b": b, "az": np.array(1, np.int8),
                                                  "bz": np.array(7, np.uint8)},
                      TensorProto.INT32)
    assert_same_as_onnxruntime(model, {"a": a})


# ---- MatMulInteger -------------------------------------------------------------------------------
MATMUL_CASES = [  # A type, B type, a zero point, b zero point, B constant
    (np.int8, np.int8, None, None, True),
    (np.uint8, np.int8, 130, None, True),
    (np.int8, np.int8, 3, -4, True),
    (np.uint8, np.uint8, 7, 200, False),
    (np.int8, np.int8, -3, 5, False),
    (np.uint8, np.uint8, 0, "per column", True),
]


@pytest.mark.parametrize("at, bt, az, bz, b_const", MATMUL_CASES)
def test_matmul_integer_matches_onnxruntime_on_int8_operands(at, bt, az, bz, b_const):
    rng = np.random.default_rng(5)
    a, b = ints(rng, at, (2, 5, 24)), weights(rng, bt, at, (24, 7))
    feed = {"a": a} if b_const else {"a": a, "b": b}
    consts = {"b": b} if b_const else {}
    if az is not None or bz is not None:
        consts["az"] = np.array(az or 0, at)
    if bz is not None:
        consts["bz"] = ints(rng, bt, (7,)) if bz == "per column" else np.array(bz, bt)
    model = single_op("MatMulInteger", feed, consts, TensorProto.INT32)
    mod = assert_same_as_onnxruntime(model, feed)
    assert mac_dtypes(mod) == {("matmul", "int8", "int32")}


def test_matmul_integer_per_row_zero_point_matches_numpy():
    rng = np.random.default_rng(6)
    a, b = ints(rng, np.uint8, (5, 16)), ints(rng, np.uint8, (16, 3))
    az, bz = ints(rng, np.uint8, (5,)), np.array(250, np.uint8)
    model = single_op("MatMulInteger", {"a": a}, {"b": b, "az": az, "bz": bz},
                      TensorProto.INT32)
    got, _ = run_tvm_llvm(model, {"a": a})
    want = (a.astype(np.int64) - az[:, None]) @ (b.astype(np.int64) - 250)
    np.testing.assert_array_equal(got, want)


def test_integer_batched_matmul_of_two_activations():
    rng = np.random.default_rng(7)
    a, b = ints(rng, np.int8, (2, 3, 4, 16)), ints(rng, np.int8, (2, 3, 16, 5))
    model = single_op("MatMulInteger", {"a": a, "b": b}, {}, TensorProto.INT32)
    mod = assert_same_as_onnxruntime(model, {"a": a, "b": b})
    (op,) = extract(mod)
    assert (op.dtype, op.batch_mode) == ("int8", "batch")


# ---- QLinearConv / QLinearMatMul: requantization as onnxruntime rounds it ------------------------
@pytest.mark.parametrize("xt, wt, per_channel", [(np.uint8, np.int8, True),
                                                 (np.int8, np.int8, False),
                                                 (np.uint8, np.uint8, False)])
def test_qlinear_conv_matches_onnxruntime(xt, wt, per_channel):
    rng = np.random.default_rng(8)
    k = 16
    x, w = ints(rng, xt, (1, 8, 20, 20)), weights(rng, wt, xt, (k, 8, 3, 3))
    w_scale = rng.uniform(0.001, 0.01, k if per_channel else ()).astype(np.float32)
    w_zp = np.zeros(k if per_channel else (), wt) if wt == np.int8 else np.array(120, wt)
    y_zp = np.array(-3 if xt == np.int8 else 131, xt)
    consts = {"xs": np.array(0.023, np.float32), "xz": np.array(11, xt), "w": w,
              "ws": w_scale, "wz": w_zp, "ys": np.array(0.37, np.float32), "yz": y_zp,
              "B": rng.integers(-3000, 3000, k).astype(np.int32)}
    model = single_op("QLinearConv", {"x": x}, consts, ONNX_TYPE[xt], pads=[1] * 4)
    mod = assert_same_as_onnxruntime(model, {"x": x})
    assert {d for _, d, _ in mac_dtypes(mod)} == {"int8"}


def every_accumulator():
    """int8 pairs (q, r) with 127 q + r = every int32 value in +-16383."""
    q, r = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    return q.ravel(), r.ravel()


def sensitive_scales(rng, acc, count, x_scale=np.float32(0.05), y_scale=np.float32(0.3)):
    """`count` weight scales for which float32 (x_scale * w_scale) / y_scale and
    x_scale * (w_scale / y_scale) requantize some accumulator value differently: only the
    multiplier onnxruntime computes passes on them."""
    acc = acc.astype(np.float32)
    found = []
    while len(found) < count:
        ws = np.float32(y_scale / (x_scale * rng.uniform(60, 200)))
        ours, other = (x_scale * ws) / y_scale, x_scale * (ws / y_scale)
        if (np.clip(np.rint(acc * ours), -128, 127) != np.clip(np.rint(acc * other), -128,
                                                                  127)).any():
            found.append(ws)
    return np.array(found, np.float32)


def test_qlinear_matmul_matches_onnxruntime_on_every_accumulator_value():
    """Every int32 accumulator value in +-16383, so every rounding tie and near-tie of
    float(acc) * multiplier is met, with scales that tell multiplier formulas apart."""
    q, r = every_accumulator()
    a = np.stack([q, r], 1).astype(np.int8)
    b = np.array([[127], [1]], np.int8)
    for b_scale in sensitive_scales(np.random.default_rng(9), 127 * q + r, 2):
        consts = {"as": np.array(0.05, np.float32), "az": np.array(0, np.int8), "b": b,
                  "bs": np.array(b_scale), "bz": np.array(0, np.int8),
                  "ys": np.array(0.3, np.float32), "yz": np.array(2, np.int8)}
        model = single_op("QLinearMatMul", {"a": a}, consts, TensorProto.INT8)
        assert_same_as_onnxruntime(model, {"a": a})


def test_qlinear_conv_per_channel_scales_on_every_accumulator_value():
    """A 1x1 QLinearConv whose two input channels (q, r) and weights (127, 1) make every
    accumulator value, each output channel with its own weight scale."""
    q, r = every_accumulator()
    x = np.stack([q, r]).reshape(1, 2, 256, 256).astype(np.int8)
    w_scales = sensitive_scales(np.random.default_rng(13), 127 * q + r, 3)
    w = np.tile(np.array([127, 1], np.int8).reshape(1, 2, 1, 1), (3, 1, 1, 1))
    consts = {"xs": np.array(0.05, np.float32), "xz": np.array(0, np.int8), "w": w,
              "ws": w_scales, "wz": np.zeros(3, np.int8), "ys": np.array(0.3, np.float32),
              "yz": np.array(-1, np.int8)}
    model = single_op("QLinearConv", {"x": x}, consts, TensorProto.INT8)
    assert_same_as_onnxruntime(model, {"x": x})


def test_qlinear_matmul_with_zero_points():
    rng = np.random.default_rng(10)
    a, b = ints(rng, np.uint8, (3, 6, 32)), ints(rng, np.uint8, (32, 12))
    consts = {"as": np.array(0.02, np.float32), "az": np.array(120, np.uint8), "b": b,
              "bs": rng.uniform(0.003, 0.008, 12).astype(np.float32),  # per column
              "bz": rng.integers(90, 110, 12).astype(np.uint8),
              "ys": np.array(0.9, np.float32), "yz": np.array(128, np.uint8)}
    model = single_op("QLinearMatMul", {"a": a}, consts, TensorProto.UINT8)
    mod = assert_same_as_onnxruntime(model, {"a": a})
    assert mac_dtypes(mod) == {("matmul", "int8", "int32")}


# ---- QuantizeLinear / DequantizeLinear (TVM's own converters) ------------------------------------
@pytest.mark.parametrize("scale", [0.125, 49.0, 0.1, 3.0])
def test_quantize_linear_rounds_ties_to_even_as_onnxruntime(scale):
    scale = np.float32(scale)
    k = np.arange(-140, 140, dtype=np.float32)
    ties = ((k + 0.5) * scale).astype(np.float32)
    x = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                        np.nextafter(ties, np.float32(-np.inf)), k * scale])
    model = single_op("QuantizeLinear", {"x": x}, {"s": np.array(scale),
                                                   "z": np.array(3, np.int8)}, TensorProto.INT8)
    assert_same_as_onnxruntime(model, {"x": x})


def test_per_axis_quantize_and_dequantize_linear():
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((2, 4, 5)) * 40).astype(np.float32)
    scales = np.array([0.5, 0.25, 0.3, 1.5], np.float32)
    quant = single_op("QuantizeLinear", {"x": x}, {"s": scales, "z": np.array([0, 1, -2, 3],
                                                                              np.int8)},
                      TensorProto.INT8, axis=1)
    assert_same_as_onnxruntime(quant, {"x": x})
    q = ints(rng, np.uint8, (2, 4, 5))
    dequant = single_op("DequantizeLinear", {"q": q}, {"s": scales,
                                                       "z": np.array([0, 9, 200, 128], np.uint8)},
                        TensorProto.FLOAT, axis=1)
    assert_same_as_onnxruntime(dequant, {"q": q})


# ---- errors and the importer hook ----------------------------------------------------------------
def test_integer_conv1d_is_refused_with_the_operator_named():
    x, w = np.zeros((1, 2, 8), np.int8), np.ones((3, 2, 3), np.int8)
    model = single_op("ConvInteger", {"x": x}, {"w": w}, TensorProto.INT32)
    with pytest.raises(InputError, match="ConvInteger: 1-D integer convolution"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx.checker: an output without a shape
        import_onnx(model)


def test_converters_are_added_only_during_the_import():
    from tvm.relax.frontend.onnx import onnx_frontend

    before = onnx_frontend._get_convert_map()
    assert "ConvInteger" not in before
    with onnx_int8.integer_converters():
        inside = onnx_frontend._get_convert_map()
        assert inside["ConvInteger"] is onnx_int8.ConvInteger
        assert inside["MatMulInteger"] is onnx_int8.MatMulInteger
    assert onnx_frontend._get_convert_map().keys() == before.keys()


def test_frontend_check_warns_on_another_tvm_and_fails_without_the_hook(monkeypatch):
    from tvm.relax.frontend.onnx import onnx_frontend

    monkeypatch.setattr(tvm, "__version__", "0.99.0")
    with pytest.warns(UserWarning, match="written against TVM 0.27"):
        onnx_int8.check_frontend()
    monkeypatch.delattr(onnx_frontend, "_get_convert_map")
    with pytest.raises(onnx_int8.FrontendError, match="_get_convert_map"):
        onnx_int8.check_frontend()


# ---- the int8 ResNet-18 --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_resnet():
    return resnet18_int8(image_size=32, width=16)


def test_int8_resnet18_is_integer_only(small_resnet):
    ops = {n.op_type for n in small_resnet.graph.node}
    assert "Conv" not in ops and "MatMul" not in ops and "Gemm" not in ops
    assert sum(n.op_type == "ConvInteger" for n in small_resnet.graph.node) == 20
    assert sum(n.op_type == "MatMulInteger" for n in small_resnet.graph.node) == 1
    inits = {t.name: t for t in small_resnet.graph.initializer}
    for node in small_resnet.graph.node:
        if node.op_type in ("ConvInteger", "MatMulInteger"):
            assert inits[node.input[1]].data_type == TensorProto.INT8
    assert small_resnet.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32


SMALL_MODELS = {  # builder, arguments, int8 activations
    "resnet18_int8": (resnet18_int8, dict(image_size=32, width=16), 1 + 20 + 8 + 1),
    "resnet50_int8": (resnet50_int8, dict(image_size=32, width=8), 1 + 53 + 16 + 1),
    "mobilenet_v2_int8": (mobilenet_v2_int8, dict(image_size=32, width_mult=0.25, blocks=3),
                          1 + 19 + 4 + 1),
    "bert_encoder_int8": (bert_encoder_int8, dict(seq_len=16, hidden=64, heads=4, layers=1),
                          1 + 6 + 2 + 2),
}


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_int8_activations_use_a_good_part_of_the_range(name):
    """Every int8 activation (each QuantizeLinear output), on the input verify feeds (not the
    calibration input): its largest magnitude is at least a quarter of the range and at most
    1 % of it saturates."""
    build, kwargs, count = SMALL_MODELS[name]
    model = build(**kwargs)
    names = activation_names(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.INT8, None)
                              for n in names)
    outs = run_onnxruntime(probe, input_feed(model))[1:]
    assert len(outs) == len(names) == count
    for name, y in zip(names, outs):
        peak = int(np.abs(y.astype(np.int32)).max())
        saturated = float(np.mean((y == 127) | (y == -128)))
        assert peak >= 32 and saturated <= 0.01, (name, peak, saturated)


def test_int8_resnet18_bad_arguments_name_the_field():
    with pytest.raises(InputError, match="opset"):
        resnet18_int8(image_size=32, width=8, opset=13)
    with pytest.raises(InputError, match="width"):
        resnet18_int8(width=0)


def verify(tmp_path, model, *args):
    from click.testing import CliRunner

    from tvm_cosa.cli import main

    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return CliRunner().invoke(main, ["verify", str(path), "--no-cache", *args])


def test_int8_resnet18_on_gemmini_equals_onnxruntime_exactly(small_resnet, tmp_path):
    result = verify(tmp_path, small_resnet)
    assert result.exit_code == 0, result.output
    assert "on the Gemmini array: 21 of 21" in result.output
    assert "21 operators on gemmini (int8)" in result.output
    assert "output 0 (int32): max abs error 0 (exact)" in result.output
    total = [line for line in result.output.splitlines() if line.startswith("total")][0].split()
    assert total[1] == "21"  # Gemmini calls: 20 convolutions and the classifier


def test_quantized_conv_with_zero_points_runs_on_gemmini_exactly(tmp_path):
    """QLinearConv with a uint8 activation (zero point 131) and uint8 weights whose zero point
    does not fold: both convolutions (the layer and its window sums) run on the array."""
    rng = np.random.default_rng(12)
    x, w = ints(rng, np.uint8, (1, 16, 12, 12)), ints(rng, np.uint8, (32, 16, 3, 3))
    consts = {"xs": np.array(0.05, np.float32), "xz": np.array(131, np.uint8), "w": w,
              "ws": np.array(0.004, np.float32), "wz": np.array(60, np.uint8),
              "ys": np.array(1.7, np.float32), "yz": np.array(100, np.uint8),
              "B": rng.integers(-500, 500, 32).astype(np.int32)}
    x_info = helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))
    y_info = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 32, 12, 12])
    node = helper.make_node("QLinearConv", ["x", *consts], ["y"], pads=[1] * 4)
    graph = helper.make_graph([node], "qconv", [x_info], [y_info],
                              [numpy_helper.from_array(v, n) for n, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    result = verify(tmp_path, model)
    assert result.exit_code == 0, result.output
    assert "on the Gemmini array: 2 of 2" in result.output
    assert "output 0 (uint8): max abs error 0 (exact)" in result.output


@pytest.mark.parametrize("name, on_array", [("resnet50_int8", "54 of 54"),
                                            ("mobilenet_v2_int8", "20 of 20"),
                                            ("bert_encoder_int8", "8 of 8")])
def test_other_int8_models_on_gemmini_equal_onnxruntime_exactly(name, on_array, tmp_path):
    build, kwargs, _ = SMALL_MODELS[name]
    result = verify(tmp_path, build(**kwargs))
    assert result.exit_code == 0, result.output
    assert f"on the Gemmini array: {on_array}" in result.output  # depthwise ones too
    assert "max abs error 0 (exact)" in result.output
