"""ONNX integer operators for TVM's Relax ONNX importer: int8 x int8 -> int32, as Gemmini computes.

TVM 0.27's importer has no ConvInteger, QLinearConv or QLinearMatMul, and imports MatMulInteger
as an int32 matmul of widened operands (which no int8 accelerator takes). `from_onnx` here is
`tvm.relax.frontend.onnx.from_onnx` with these converters added (TVM's files are not modified):

- ConvInteger, MatMulInteger: `R.nn.conv2d` / `R.matmul` of int8 operands with out_dtype int32.
- QLinearConv, QLinearMatMul: the same integer operator, the int32 bias, then requantization as
  onnxruntime computes it: `saturate(round_half_even(float(acc) * m) + y_zero_point)` with the
  float32 multiplier `m = (x_scale * w_scale) / y_scale` (per output channel / column).

Zero points. Gemmini multiplies int8 operands without zero points, so they are taken out of the
multiply-accumulate, exactly (all in integers):
- uint8 operands are shifted by -128 to int8, and their zero points with them;
- constant weights get their zero point folded in (`w - w_zp`, per tensor or per output
  channel / column) when the result fits int8;
- any other zero point stays apart and is applied as integer corrections of the int8 product:
  for matmuls (A - za)(B - zb) = AB - za colsum(B) - rowsum(A) zb + K za zb; for convolutions the
  input is padded with its zero point explicitly (as onnxruntime pads) and
  sum (x - zx)(w - zw) = sum x w - zx sum w - zw sum x + n zx zw per window, the window sums
  `sum x` being one more convolution (with ones), also int8.
Zero points that are not constants, convolution weights that are not constants, and 1-D matmul
operands are computed exactly as an int32 operator on widened operands instead (on the CPU).

QuantizeLinear / DequantizeLinear keep TVM's own converters (tests check them against
onnxruntime, ties included).

The converters are added by replacing the importer's module function `_get_convert_map` for the
duration of one import (under a lock). `check_frontend()` verifies the importer still has that
hook and warns when the TVM version is not the one this was written against.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np

from ..errors import CoSAError

TESTED_TVM = "0.27"  # the TVM release whose importer internals these converters rely on
_HOOK = "_get_convert_map"
_LOCK = threading.RLock()


class FrontendError(CoSAError):
    """The installed TVM's ONNX importer lacks the hook the integer converters need."""


# ---- the importer hook ---------------------------------------------------------------------------
def check_frontend():
    """TVM's ONNX importer module, checked for the hook; a UserWarning if TVM is not 0.27."""
    import tvm

    try:
        from tvm.relax.frontend.onnx import onnx_frontend
    except ImportError as err:
        raise FrontendError(f"TVM {tvm.__version__} has no Relax ONNX importer ({err}); "
                            f"install apache-tvm {TESTED_TVM}") from None
    missing = [n for n in (_HOOK, "from_onnx") if not callable(getattr(onnx_frontend, n, None))]
    if missing:
        raise FrontendError(f"TVM {tvm.__version__}'s ONNX importer has no {', '.join(missing)}; "
                            f"tvm_cosa's integer converters need TVM {TESTED_TVM}'s importer")
    if not str(tvm.__version__).startswith(TESTED_TVM):
        warnings.warn(f"tvm_cosa.relax.onnx_int8 was written against TVM {TESTED_TVM}'s ONNX "
                      f"importer; TVM is {tvm.__version__}", stacklevel=3)
    return onnx_frontend


def converters() -> dict:
    """ONNX operator name -> converter class, the ones added to TVM's importer."""
    from .onnx_qops import converters as quantized_op_converters

    return {"ConvInteger": ConvInteger, "MatMulInteger": MatMulInteger,
            "QLinearConv": QLinearConv, "QLinearMatMul": QLinearMatMul,
            **quantized_op_converters()}


@contextlib.contextmanager
def integer_converters():
    """Inside this block, TVM's ONNX importer also knows the integer operators."""
    frontend = check_frontend()
    with _LOCK:
        original = getattr(frontend, _HOOK)

        def extended():
            table = original()
            table.update(converters())
            return table

        setattr(frontend, _HOOK, extended)
        try:
            yield frontend
        finally:
            setattr(frontend, _HOOK, original)


def from_onnx(model, shape_dict=None, dtype_dict="float32", opset=None,
              keep_params_in_input=False):
    """`tvm.relax.frontend.onnx.from_onnx` with the integer operators of this module."""
    with integer_converters() as frontend:
        return frontend.from_onnx(model, shape_dict=shape_dict, dtype_dict=dtype_dict,
                                  opset=opset, keep_params_in_input=keep_params_in_input)


# ---- small helpers -------------------------------------------------------------------------------
def _relax():
    from tvm import relax

    return relax


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _shape(expr) -> tuple:
    return tuple(int(v) for v in expr.ty.shape.values)


def _const_value(expr, params):
    """The numpy value of a constant input (an initializer, or a parameter kept as input)."""
    if expr is None:
        return None
    value = getattr(expr, "value", None)
    if value is None and params is not None:
        from tvm.relax.frontend.onnx.onnx_frontend import get_constant

        value = getattr(get_constant(expr, params), "value", None)
    return value.numpy() if hasattr(value, "numpy") else None


def _const(array, dtype):
    return _relax().const(np.asarray(array, dtype=dtype), dtype)


def _int8_range(array) -> bool:
    return array.size == 0 or (array.min() >= -128 and array.max() <= 127)


class UnsupportedQuantization(NotImplementedError):
    pass


class _Converter:
    """Dispatch by opset as TVM's OnnxOpConverter does: the newest `_impl_vN` with N <= opset."""

    @classmethod
    def get_converter(cls, opset):
        versions = sorted(int(n[len("_impl_v"):]) for n in dir(cls) if n.startswith("_impl_v"))
        fitting = [v for v in versions if v <= opset]
        return getattr(cls, f"_impl_v{max(fitting) if fitting else versions[0]}")


# ---- operands: int8 values and integer zero points ----------------------------------------------
class _Operand:
    """An operand as int8 values `expr` and a zero point `zp` (int64 numpy array, broadcastable
    to the operand; all zeros when there is none), or `expr` None when it does not fit."""

    def __init__(self, expr, zp, const=None):
        self.expr, self.zp, self.const = expr, zp, const

    @property
    def has_zp(self) -> bool:
        return bool(np.any(self.zp))


def _weight_operand(value: np.ndarray, zp: np.ndarray, channel_axis: int) -> _Operand:
    """Constant weights with the zero point folded in: int8 if `value - zp` fits."""
    zp = _broadcast_zp(zp, value.ndim, channel_axis)
    folded = value.astype(np.int64) - zp
    if not _int8_range(folded):
        return _Operand(None, zp)
    return _Operand(_const(folded, "int8"), np.zeros((), np.int64), const=folded)


def _shifted_weight_operand(value: np.ndarray, zp: np.ndarray, channel_axis: int) -> _Operand:
    """Constant weights kept as int8 (uint8 shifted by -128) with their zero point apart."""
    shift = 128 if value.dtype == np.uint8 else 0
    shifted = value.astype(np.int64) - shift
    zp = _broadcast_zp(zp, value.ndim, channel_axis) - shift
    return _Operand(_const(shifted.astype(np.int8), "int8"), zp, const=shifted)


def _broadcast_zp(zp, ndim: int, axis: int) -> np.ndarray:
    """A scalar or per-`axis` (1-D) zero point, shaped to broadcast against an ndim tensor."""
    zp = np.asarray(zp, dtype=np.int64)
    if zp.ndim == 1 and zp.size > 1:
        shape = [1] * ndim
        shape[axis] = zp.size
        return zp.reshape(shape)
    return zp.reshape(()) if zp.size == 1 else zp


def _activation_operand(expr, zp: np.ndarray) -> _Operand:
    """An activation as int8 and its zero point: uint8 values shift by -128 (exact)."""
    relax = _relax()
    dtype = _dtype(expr)
    zp = np.asarray(zp, dtype=np.int64)
    if dtype == "int8":
        return _Operand(expr, zp)
    if dtype == "uint8":
        shifted = relax.op.astype(relax.op.subtract(relax.op.astype(expr, "int32"),
                                                    _const(128, "int32")), "int8")
        return _Operand(shifted, zp - 128)
    raise UnsupportedQuantization(f"operand of type {dtype}; expected int8 or uint8")


def _zero_point(inputs, index, params, operand_dtype):
    """The numpy value of an optional zero point input (0 when absent), or None when it is
    not a constant."""
    zp = inputs[index]
    if zp is None:
        return np.zeros((), np.int64)
    if _dtype(zp) != operand_dtype:
        raise UnsupportedQuantization(f"zero point of type {_dtype(zp)} for an operand of type "
                                      f"{operand_dtype} (ONNX requires the same type)")
    value = _const_value(zp, params)
    return None if value is None else value.astype(np.int64)


def _widened(bb, expr, zp_expr, axis_shape):
    """expr - zero point, in int32 (the exact fallback)."""
    relax = _relax()
    wide = relax.op.astype(expr, "int32")
    if zp_expr is None:
        return wide
    zp = bb.normalize(relax.op.astype(zp_expr, "int32"))
    if axis_shape is not None:
        zp = relax.op.reshape(zp, axis_shape)
    return bb.normalize(relax.op.subtract(wide, zp))


# ---- convolution ---------------------------------------------------------------------------------
def _conv_pads(attr, data_shape, kernel, strides, dilations):
    """Explicit (top, left, bottom, right) padding, auto_pad resolved as ONNX defines it."""
    auto_pad = attr.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("NOTSET", ""):
        pads = list(attr.get("pads", [0] * 4))
        return tuple(pads)
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedQuantization(f"auto_pad {auto_pad!r}")
    begin, end = [], []
    for size, k, s, d in zip(data_shape[2:], kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return tuple(begin + end)


def integer_conv2d(bb, inputs, attr, params, *, x_zp_index=2, w_zp_index=3, w_index=1):
    """conv2d(x - x_zp, w - w_zp) in int32, on int8 operands when the zero points allow it."""
    relax = _relax()
    x, w = inputs[0], inputs[w_index]
    if len(_shape(x)) != 4:
        raise UnsupportedQuantization(f"{len(_shape(x)) - 2}-D integer convolution (only 2-D)")
    kernel = _shape(w)[2:]
    strides = tuple(attr.get("strides", (1, 1)))
    dilations = tuple(attr.get("dilations", (1, 1)))
    groups = int(attr.get("group", 1))
    pads = _conv_pads(attr, _shape(x), kernel, strides, dilations)
    conv = dict(strides=strides, dilation=dilations, groups=groups, data_layout="NCHW",
                kernel_layout="OIHW", out_dtype="int32")

    x_zp = _zero_point(inputs, x_zp_index, params, _dtype(x))
    w_zp = _zero_point(inputs, w_zp_index, params, _dtype(w))
    w_value = _const_value(w, params)
    if x_zp is None or x_zp.size != 1 or w_value is None or w_zp is None:
        return _conv_int32_fallback(bb, inputs, x_zp_index, w_zp_index, w_index, pads, conv)
    act = _activation_operand(x, x_zp.reshape(()))
    wts = _weight_operand(w_value, w_zp, 0)
    if wts.expr is None:  # w - w_zp does not fit int8: keep the zero point apart
        wts = _shifted_weight_operand(w_value, w_zp, 0)
    if not (act.has_zp or wts.has_zp):
        return relax.op.nn.conv2d(act.expr, wts.expr, padding=pads, **conv)
    # With zero points: pad x with its zero point explicitly (as onnxruntime does), then
    # sum (x - zx)(w - zw) = sum x w - zx sum w - zw sum x + n zx zw over every window.
    zx = int(act.zp)
    top, left, bottom, right = pads
    padded = bb.normalize(relax.op.nn.pad(act.expr, [0, 0, 0, 0, top, bottom, left, right],
                                          pad_value=float(zx)))
    out = bb.normalize(relax.op.nn.conv2d(padded, wts.expr, padding=(0, 0, 0, 0), **conv))
    if act.has_zp:
        out = relax.op.subtract(out, _const(zx * _per_channel(wts.const.sum(axis=(1, 2, 3))),
                                            "int32"))
    if wts.has_zp:
        zw = _per_channel(np.broadcast_to(wts.zp.reshape(-1), (_shape(w)[0],)))
        out = relax.op.subtract(out, relax.op.multiply(
            _window_sums(bb, padded, _shape(w), groups, conv), _const(zw, "int32")))
        if act.has_zp:
            n = int(np.prod(_shape(w)[1:]))
            out = relax.op.add(out, _const(n * zx * zw, "int32"))
    return out


def _per_channel(values) -> np.ndarray:
    return np.asarray(values, np.int64).reshape(1, -1, 1, 1)


def _window_sums(bb, padded, w_shape, groups, conv):
    """Per output channel, the sum of the inputs under each window: a convolution with ones."""
    relax = _relax()
    k, cg, r, s = w_shape
    ones = _const(np.ones((groups, cg, r, s), np.int8), "int8")
    sums = relax.op.nn.conv2d(padded, ones, padding=(0, 0, 0, 0), **conv)  # [N, groups, P, Q]
    if groups == 1:
        return sums
    return relax.op.repeat(bb.normalize(sums), k // groups, axis=1)


def _conv_int32_fallback(bb, inputs, x_zp_index, w_zp_index, w_index, pads, conv):
    """The exact convolution of widened operands (zero points subtracted in int32): the pad
    value 0 of (x - x_zp) is x padded with its zero point, as onnxruntime does."""
    relax = _relax()
    x, w = inputs[0], inputs[w_index]
    w_zp = inputs[w_zp_index]
    w_zp_shape = [-1, 1, 1, 1] if w_zp is not None and len(_shape(w_zp)) == 1 else None
    return relax.op.nn.conv2d(_widened(bb, x, inputs[x_zp_index], None),
                              _widened(bb, w, w_zp, w_zp_shape), padding=pads, **conv)


# ---- matmul --------------------------------------------------------------------------------------
def integer_matmul(bb, inputs, params, *, a_zp_index=2, b_zp_index=3, b_index=1):
    """matmul(A - a_zp, B - b_zp) in int32 from an int8 x int8 matmul and zero-point terms."""
    relax = _relax()
    a, b = inputs[0], inputs[b_index]
    sa, sb = _shape(a), _shape(b)
    a_zp = _zero_point(inputs, a_zp_index, params, _dtype(a))
    b_zp = _zero_point(inputs, b_zp_index, params, _dtype(b))
    if len(sa) < 2 or len(sb) < 2 or a_zp is None or b_zp is None:
        return _matmul_int32_fallback(bb, inputs, a_zp_index, b_zp_index, b_index)
    # per-row [M] / per-column [N] zero points broadcast as [M, 1] / [1, N]
    act = _activation_operand(a, _broadcast_zp(a_zp, 2, 0))
    b_value = _const_value(b, params)
    wts = _weight_operand(b_value, b_zp, len(sb) - 1) if b_value is not None else None
    if wts is not None and wts.expr is None:  # B - b_zp does not fit int8: keep zb apart
        wts = _shifted_weight_operand(b_value, b_zp, len(sb) - 1)
    elif wts is None:
        wts = _activation_operand(b, _broadcast_zp(b_zp, 2, 1))
    out = bb.normalize(relax.op.matmul(act.expr, wts.expr, out_dtype="int32"))
    return _zero_point_terms(out, act, wts, k=sa[-1])


def _zero_point_terms(out, act, wts, k):
    """(A - za)(B - zb) = AB - za * colsum(B) - rowsum(A) * zb + K * za * zb."""
    relax = _relax()
    if act.has_zp:
        if wts.const is not None:
            colsum = _const(wts.const.sum(axis=-2, keepdims=True), "int32")
        else:
            colsum = relax.op.sum(relax.op.astype(wts.expr, "int32"), axis=-2, keepdims=True)
        out = relax.op.subtract(out, relax.op.multiply(_const(act.zp, "int32"), colsum))
    if wts.has_zp:
        rowsum = relax.op.sum(relax.op.astype(act.expr, "int32"), axis=-1, keepdims=True)
        out = relax.op.subtract(out, relax.op.multiply(rowsum, _const(wts.zp, "int32")))
        if act.has_zp:
            out = relax.op.add(out, _const(k * act.zp * wts.zp, "int32"))
    return out


def _matmul_int32_fallback(bb, inputs, a_zp_index, b_zp_index, b_index):
    relax = _relax()
    a, b = inputs[0], inputs[b_index]
    a_zp, b_zp = inputs[a_zp_index], inputs[b_zp_index]
    a_shape = [-1, 1] if a_zp is not None and len(_shape(a_zp)) == 1 else None
    b_shape = [1, -1] if b_zp is not None and len(_shape(b_zp)) == 1 else None
    return relax.op.matmul(_widened(bb, a, a_zp, a_shape), _widened(bb, b, b_zp, b_shape),
                           out_dtype="int32")


# ---- requantization ------------------------------------------------------------------------------
def _multiplier(x_scale, w_scale, y_scale, params, axis, ndim):
    """(x_scale * w_scale) / y_scale in float32, as onnxruntime computes it, shaped to
    broadcast along `axis` when w_scale is per channel."""
    relax = _relax()
    values = [_const_value(s, params) for s in (x_scale, w_scale, y_scale)]
    if all(v is not None for v in values):
        xs, ws, ys = (np.asarray(v, np.float32) for v in values)
        m = (xs.reshape(()) * ws.reshape(-1)) / ys.reshape(())
        if m.size == 1:  # a 1-element tensor, not a scalar: TVM would inline a scalar as a
            return _const(m.reshape([1] * ndim), "float32")  # C literal of fewer digits
        shape = [1] * ndim
        shape[axis] = m.size
        return _const(m.reshape(shape), "float32")
    m = relax.op.divide(relax.op.multiply(x_scale, w_scale), y_scale)
    if len(_shape(w_scale)) == 1 and _shape(w_scale)[0] > 1:
        shape = [1] * ndim
        shape[axis] = -1
        m = relax.op.reshape(m, shape)
    return m


def requantize(acc, multiplier, y_zp):
    """saturate(round_half_even(float(acc) * multiplier) + y_zp), in y_zp's type."""
    relax = _relax()
    dtype = _dtype(y_zp)
    if dtype not in ("int8", "uint8"):
        raise UnsupportedQuantization(f"output zero point of type {dtype}")
    info = np.iinfo(dtype)
    scaled = relax.op.round(relax.op.multiply(relax.op.astype(acc, "float32"), multiplier))
    shifted = relax.op.add(scaled, relax.op.astype(y_zp, "float32"))
    clipped = relax.op.clip(shifted, relax.prim_value(float(info.min)),
                            relax.prim_value(float(info.max)))
    return relax.op.astype(clipped, dtype)


# ---- the converters ------------------------------------------------------------------------------
def _named(op, fn):
    """Errors of the converters name the ONNX operator."""
    try:
        return fn()
    except UnsupportedQuantization as err:
        raise UnsupportedQuantization(f"{op}: {err}") from None


class ConvInteger(_Converter):
    """ConvInteger(x, w, x_zero_point?, w_zero_point?) -> int32 (opset 10)."""

    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        return _named("ConvInteger", lambda: integer_conv2d(bb, inputs, attr, params))


class MatMulInteger(_Converter):
    """MatMulInteger(A, B, a_zero_point?, b_zero_point?) -> int32 (opset 10)."""

    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        return _named("MatMulInteger", lambda: integer_matmul(bb, inputs, params))


class QLinearConv(_Converter):
    """QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?) (opset 10)."""

    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        def convert():
            acc = integer_conv2d(bb, inputs, attr, params, x_zp_index=2, w_index=3,
                                 w_zp_index=5)
            if inputs[8] is not None:
                acc = _relax().op.add(acc, _relax().op.reshape(inputs[8], [1, -1, 1, 1]))
            m = _multiplier(inputs[1], inputs[4], inputs[6], params, axis=1, ndim=4)
            return requantize(acc, m, inputs[7])

        return _named("QLinearConv", convert)


class QLinearMatMul(_Converter):
    """QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp) (opset 10)."""

    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        def convert():
            acc = bb.normalize(integer_matmul(bb, inputs, params, a_zp_index=2, b_index=3,
                                              b_zp_index=5))
            ndim = len(_shape(acc))
            m = _multiplier(inputs[1], inputs[4], inputs[6], params, axis=ndim - 1, ndim=ndim)
            return requantize(acc, m, inputs[7])

        return _named("QLinearMatMul", convert)
