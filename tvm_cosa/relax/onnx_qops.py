"""onnxruntime's quantized kernels other than QLinearConv / QLinearMatMul, rewritten into standard
ONNX integer arithmetic that gives the same integers, before the import.

After its graph optimizations onnxruntime does not run the float operators of a QDQ model: it runs
integer kernels whose rounding differs from "dequantize, float operator, quantize". This module
rewrites each such group of the ONNX graph (and the same kernels in QOperator models) into ONNX
integer arithmetic (Cast, Add, ReduceSum, MatMulInteger and two operators of ours, a table look-up
and a requantization, defined as ONNX functions) whose integers are onnxruntime's; onnxruntime
itself gives the same result on the rewritten model:

- DQ(a), DQ(b) -> Add -> Q, and com.microsoft QLinearAdd: onnxruntime's QLinearAdd kernel
  (MLAS qladd). Its result is a function of the two 8-bit inputs only, so it becomes a 256 x 256
  table computed here exactly as MLAS computes it (float32; the AVX2 kernel fuses multiply-adds)
  and a Gather at index a * 256 + b.
- DQ(x) -> BatchNormalization / Relu / Clip ... -> Q (float operators onnxruntime leaves between a
  DequantizeLinear and a QuantizeLinear): a function of one 8-bit value per channel, a table per
  channel computed with onnxruntime's float32 formulas (DequantizeLinear `float(x - zp) * s`,
  BatchNormalization `x * (scale / sqrt(var + eps)) + (B - mean * that)`, QuantizeLinear
  `round_half_even(x / s) + zp` saturated).
- DQ(x) -> GlobalAveragePool -> Q, and com.microsoft QLinearGlobalAveragePool (MLAS qlgavgpool):
  sum(x) - zp_x * N in int32, times the float32 scale `s_x / (s_y * N)`, rounded half to even.
- DQ(a), DQ(B), DQ(C int32) -> Gemm -> Q, and com.microsoft QGemm: MatMulInteger (an int8 matmul
  for Gemmini), the int32 bias, times `(alpha * s_a * s_b) / s_y` in float32, rounded half to even.

Conditions are onnxruntime's own (per-tensor activation scales and zero points, constant, the
output of the inputs' type; weights of Gemm per tensor or per output channel). A group that does
not fit is left as it is; `exactness_notes` says why a model may still differ.

Where onnxruntime's choice depends on the machine: MLAS picks its QLinearAdd kernel by CPU; the
table follows the AVX2/FMA kernel on CPUs that have it and the SSE2 kernel otherwise
(`add_kernel`). int8 (not uint8) activations: onnxruntime on x86 fuses only some QDQ groups
(QDQIsInt8Allowed is false there) and runs the others as float32 operators (see onnx_qdq).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np

from .onnx_qdq import INT8_TYPES, _elem_types, _Graph, _inferred_graph, _Quant, _drop_unused

AVX2, SSE = "avx2", "sse"
_MS = "com.microsoft"


@dataclass
class RewriteResult:
    model: object  # onnx.ModelProto
    rewritten: list = field(default_factory=list)  # [(node name, "QLinearAdd table"), ...]


# ---- onnxruntime's arithmetic in numpy -----------------------------------------------------------
def host_add_kernel() -> str:
    """The QLinearAdd kernel MLAS picks on this CPU: AVX2 (with FMA) or SSE2."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # older numpy
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return AVX2 if features.get("AVX2") and features.get("FMA3") else SSE


def fma32(a, b, c) -> np.ndarray:
    """float32 a * b + c with one rounding (the FMA instruction), exactly: the product is exact in
    float64, the sum is rounded to odd in float64 and then to nearest float32 (no double
    rounding: float64 has more than two extra bits)."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    product = a * b
    total = product + c
    back = total - product
    error = (product - (total - back)) + (c - back)  # TwoSum: the exact sum is total + error
    odd = (np.atleast_1d(total).view(np.int64) & 1).reshape(np.shape(total)) == 1
    toward = np.nextafter(total, np.where(error > 0, np.inf, -np.inf))
    return np.where((error != 0) & ~odd, toward, total).astype(np.float32)


def _saturate(values, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def qlinear_add_table(a: _Quant, b: _Quant, y: _Quant, kernel: str) -> np.ndarray:
    """onnxruntime's QLinearAdd of every pair of 8-bit values: table[a - min, b - min]."""
    f32 = np.float32
    dtype = INT8_TYPES[y.elem_type]
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64)
    qa, qb = np.meshgrid(values.astype(f32), values.astype(f32), indexing="ij")
    sa, sb, sy = (f32(q.scale.reshape(-1)[0]) for q in (a, b, y))
    za, zb, zy = (int(q.zero_point.reshape(-1)[0]) for q in (a, b, y))
    ratio_a, ratio_b = f32(sa / sy), f32(sb / sy)
    if kernel == AVX2:  # MLAS qladd_avx2: the fixed part as the compiler contracts it, two FMAs
        fixed = f32(f32(zy) - fma32(ratio_a, f32(za), f32(ratio_b * f32(zb))))
        total = fma32(qa, ratio_a, fma32(qb, ratio_b, fixed))
    else:  # MLAS qladd.cpp, SSE2: (fixed + a * ratio_a) + b * ratio_b
        fixed = f32(f32(zy) - f32(f32(ratio_a * f32(za)) + f32(ratio_b * f32(zb))))
        total = f32(f32(fixed + f32(qa * ratio_a)) + f32(qb * ratio_b))
    return _saturate(np.rint(total), dtype)


def dequantize(values, q: _Quant, channel_axis_shape=None) -> np.ndarray:
    """onnxruntime's DequantizeLinear: float(x - zp) * scale."""
    scale, zp = q.scale.astype(np.float32), q.zero_point.astype(np.int64)
    if channel_axis_shape is not None and scale.size > 1:
        scale, zp = scale.reshape(channel_axis_shape), zp.reshape(channel_axis_shape)
    return (np.asarray(values, np.int64) - zp).astype(np.float32) * scale


def quantize(values, q: _Quant) -> np.ndarray:
    """onnxruntime's QuantizeLinear (MLAS): round_half_even(x / scale) + zp, saturated."""
    dtype = INT8_TYPES[q.elem_type]
    info = np.iinfo(dtype)
    zp = int(q.zero_point.reshape(-1)[0])
    scaled = np.asarray(values, np.float32) / np.float32(q.scale.reshape(-1)[0])
    scaled = np.clip(scaled, np.float32(info.min - zp), np.float32(info.max - zp))
    return (np.rint(scaled).astype(np.int64) + zp).astype(dtype)


def batch_norm(x, scale, bias, mean, var, epsilon) -> np.ndarray:
    """onnxruntime's BatchNormalization (inference; Eigen): x * new_scale + new_bias, x [C, ...]."""
    f32 = np.float32
    inv_std = f32(1) / np.sqrt(var.astype(f32) + f32(epsilon))
    new_scale = (inv_std * scale.astype(f32)).astype(f32)
    new_bias = (bias.astype(f32) - (mean.astype(f32) * new_scale).astype(f32)).astype(f32)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return ((x * new_scale.reshape(shape)).astype(f32) + new_bias.reshape(shape)).astype(f32)


# ---- the rewrite ---------------------------------------------------------------------------------
class _Builder:
    """New nodes and initializers with unique names."""

    def __init__(self, graph):
        self.graph = graph
        self.taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
        self.taken |= {v.name for v in graph.input}
        self.initializers = []

    def name(self, stem: str) -> str:
        name, i = stem, 0
        while name in self.taken:
            i += 1
            name = f"{stem}_{i}"
        self.taken.add(name)
        return name

    def const(self, value, stem) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, nodes, op, inputs, stem, output=None, **attrs) -> str:
        from onnx import helper

        out = output or self.name(stem)
        nodes.append(helper.make_node(op, inputs, [out], name=self.name(f"{stem}_node"), **attrs))
        return out


# Two small operators of our own (domain ai.tvm_cosa) carry the rewrite: TVM imports them with
# the converters below (TVM's own Gather and float-to-int Cast converters add index and NaN
# handling the C target cannot build); the model also defines them as ONNX functions of
# standard operators, so onnxruntime runs the rewritten model too (the tests compare).
DOMAIN = "ai.tvm_cosa"
LOOKUP = "LookupTable"  # (table [T], index int32) -> table[index]
REQUANTIZE = {2: "RequantizeToUInt8", 3: "RequantizeToInt8"}  # (acc, float32 m, zp) -> 8-bit


def _table_lookup(build, nodes, index_terms, table, stem, output):
    """table.flatten()[sum of the int32 index terms] into `output`."""
    from onnx import helper

    index = index_terms[0]
    for term in index_terms[1:]:
        index = build.node(nodes, "Add", [index, term], f"{stem}_index")
    flat = build.const(table.reshape(-1), f"{stem}_table")
    nodes.append(helper.make_node(LOOKUP, [flat, index], [output], name=build.name(f"{stem}_lut"),
                                  domain=DOMAIN))
    return output


def _as_int32(build, nodes, name, stem):
    return build.node(nodes, "Cast", [name], f"{stem}_int32", to=6)


def _requantize(build, nodes, acc_int32, multiplier, y: _Quant, stem, output):
    """MLAS requantization: clamp(float(acc) * m, min - zp, max - zp), round half to even, + zp."""
    from onnx import helper

    zp = build.const(y.zero_point.reshape(()), f"{stem}_y_zero_point")
    m = build.const(np.asarray(multiplier, np.float32), f"{stem}_multiplier")
    nodes.append(helper.make_node(REQUANTIZE[y.elem_type], [acc_int32, m, zp], [output],
                                  name=build.name(f"{stem}_requantize"), domain=DOMAIN))
    return output


def _functions(opset: int):
    """The ONNX function definitions of our operators (standard operators only)."""
    from onnx import TensorProto, helper

    lookup = helper.make_function(
        DOMAIN, LOOKUP, ["table", "index"], ["out"],
        [helper.make_node("Gather", ["table", "index"], ["out"], axis=0)],
        [helper.make_opsetid("", opset)])
    functions = [lookup]
    for elem_type, name in REQUANTIZE.items():
        info = np.iinfo(INT8_TYPES[elem_type])
        body = [
            helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["acc_f", "m"], ["scaled"]),
            helper.make_node("Cast", ["zp"], ["zp_f"], to=TensorProto.FLOAT),
            helper.make_node("Constant", [], ["lo_c"], value=helper.make_tensor(
                "lo_c", TensorProto.FLOAT, [], [float(info.min)])),
            helper.make_node("Constant", [], ["hi_c"], value=helper.make_tensor(
                "hi_c", TensorProto.FLOAT, [], [float(info.max)])),
            helper.make_node("Sub", ["lo_c", "zp_f"], ["lo"]),
            helper.make_node("Sub", ["hi_c", "zp_f"], ["hi"]),
            helper.make_node("Clip", ["scaled", "lo", "hi"], ["clamped"]),
            helper.make_node("Round", ["clamped"], ["rounded"]),
            helper.make_node("Add", ["rounded", "zp_f"], ["shifted"]),
            helper.make_node("Cast", ["shifted"], ["out"], to=elem_type)]
        functions.append(helper.make_function(DOMAIN, name, ["acc", "m", "zp"], ["out"], body,
                                              [helper.make_opsetid("", opset)]))
    return functions


def _add_functions(model):
    from onnx import helper

    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    have = {(f.domain, f.name) for f in model.functions}
    model.functions.extend(f for f in _functions(opset) if (f.domain, f.name) not in have)
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))


class LookupTable:
    """ai.tvm_cosa LookupTable(table, index) -> take(table, index): indices are in range by
    construction (clip mode: no out-of-bounds read whatever happens)."""

    @classmethod
    def get_converter(cls, opset):
        return cls.convert

    @staticmethod
    def convert(bb, inputs, attr, params):
        from tvm import relax

        return relax.op.take(inputs[0], inputs[1], axis=0, mode="clip")


class Requantize:
    """ai.tvm_cosa RequantizeTo(U)Int8(acc, m, zp): onnx_int8.requantize (round half to even)."""

    @classmethod
    def get_converter(cls, opset):
        return cls.convert

    @staticmethod
    def convert(bb, inputs, attr, params):
        from tvm import relax

        from .onnx_int8 import _shape, requantize

        multiplier = inputs[1]
        if not _shape(multiplier):  # a scalar would be inlined as a C literal of fewer digits
            multiplier = relax.op.reshape(multiplier, [1])
        return requantize(inputs[0], multiplier, inputs[2])


def converters() -> dict:
    """Our operators for TVM's ONNX importer (onnx_int8 adds them)."""
    return {LOOKUP: LookupTable, **{name: Requantize for name in REQUANTIZE.values()}}


def _per_tensor_8bit(*quants) -> bool:
    return all(q is not None and q.elem_type in INT8_TYPES and q.scale.size == 1
               and q.zero_point.size == 1 for q in quants)


class _Rewriter:
    def __init__(self, model, kernel):
        inferred = _inferred_graph(model)
        self.graph = _Graph(model, _elem_types(inferred))
        self.shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                       for v in [*inferred.input, *inferred.value_info, *inferred.output]
                       if v.type.tensor_type.HasField("shape")}
        self.build = _Builder(model.graph)
        self.kernel = kernel
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=0)
        self.removed, self.replaced = set(), {}  # id(node) -> [new nodes]
        self.reads: dict[str, int] = {}
        self.result = RewriteResult(model)

    def consume(self, group_nodes, dequantizers):
        """The group's nodes go; a DequantizeLinear goes once nothing else reads it."""
        self.removed.update(id(n) for n in group_nodes)
        for dq in dequantizers:
            name = dq.node.output[0]
            self.reads[name] = self.reads.get(name, 0) + 1
            if self.reads[name] == self.graph.uses[name]:
                self.removed.add(id(dq.node))

    # -- DQ, DQ -> Add -> Q ------------------------------------------------------------------------
    def add(self, node):
        if len(node.input) != 2:
            return None
        a, b = (self.graph.dequantized(n) for n in node.input)
        quant = self.graph.quantizer(node)
        if a is None or b is None or quant is None:
            return None
        y, relu = quant
        if not _per_tensor_8bit(a, b, y) or not a.elem_type == b.elem_type == y.elem_type:
            return None
        nodes = self._add_nodes(a.int_name, b.int_name, a, b, y, node.name or node.output[0],
                                y.int_name)
        self.consume([node, y.node] + ([relu] if relu else []), [a, b])
        return nodes, "QLinearAdd table"

    def _add_nodes(self, a_name, b_name, a, b, y, stem, output):
        table = qlinear_add_table(a, b, y, self.kernel)
        low = int(np.iinfo(INT8_TYPES[y.elem_type]).min)
        build, nodes = self.build, []
        ia = build.node(nodes, "Mul", [_as_int32(build, nodes, a_name, stem),
                                       build.const(np.int32(256), f"{stem}_row")], f"{stem}_a")
        ib = _as_int32(build, nodes, b_name, stem)
        offset = build.const(np.int32(-low * 256 - low), f"{stem}_offset")
        _table_lookup(build, nodes, [ia, ib, offset], table, stem, output)
        return nodes

    # -- DQ -> elementwise float operators -> Q ----------------------------------------------------
    def elementwise(self, node):
        """DQ(x) -> chain of BatchNormalization / Relu / Clip -> Q, starting at `node`."""
        x = self.graph.dequantized(node.input[0]) if node.input else None
        if x is None or not _per_tensor_8bit(x):
            return None
        chain, constant_dqs, channel_counts, current = [], [], set(), node
        while True:
            found = self._elementwise_step(current)
            if found is None:
                return None
            step, channels, dqs = found
            chain.append((current, step))
            constant_dqs += dqs
            channel_counts |= {channels} - {None}
            nxt = self.graph.only_consumer(current.output[0])
            if nxt is None:
                return None
            if nxt.op_type == "QuantizeLinear" and nxt.domain in ("", "ai.onnx"):
                break
            current = nxt
        y = self.graph._quant(nxt, nxt.output[0], self.graph.types.get(nxt.output[0]))
        if not _per_tensor_8bit(y):
            return None
        if len(channel_counts) > 1:
            return None
        channels = channel_counts.pop() if channel_counts else 1
        info = np.iinfo(INT8_TYPES[x.elem_type])
        values = np.arange(info.min, info.max + 1, dtype=np.int64)
        grid = np.broadcast_to(values, (channels, values.size))  # [C, 256]: channel axis first
        floats = dequantize(grid, x)
        for _, step in chain:
            floats = step(floats)
        table = quantize(floats, y)
        stem = node.name or node.output[0]
        build, nodes = self.build, []
        index = [_as_int32(build, nodes, x.int_name, stem)]
        rank = len(self.shapes.get(node.input[0], [])) or 4
        offsets = (np.arange(channels, dtype=np.int32) * values.size - info.min)
        index.append(build.const(offsets.reshape((1, channels) + (1,) * (rank - 2))
                                 if channels > 1 else np.int32(-info.min), f"{stem}_offset"))
        _table_lookup(build, nodes, index, table, stem, y.int_name)
        self.consume([n for n, _ in chain] + [nxt], [x] + constant_dqs)
        return nodes, "elementwise table"

    def _elementwise_step(self, node):
        """(numpy function [C, values] -> [C, values] computing `node` as onnxruntime does, its
        channel count or None, the DequantizeLinear nodes of its constants), or None when `node`
        is not one we can tabulate (then the group stays)."""
        if node.domain not in ("", "ai.onnx"):
            return None
        found = [self._constant(n) if n else (None, None) for n in node.input[1:]]
        consts = [value for value, _ in found]
        dqs = [dq for _, dq in found if dq is not None]
        if any(c is None for c, n in zip(consts, node.input[1:]) if n):
            return None
        if node.op_type == "Relu":
            return (lambda v: np.maximum(v, np.float32(0))), None, dqs
        if node.op_type == "Clip":
            attrs = {a.name: a for a in node.attribute}
            lo = consts[0] if len(consts) > 0 and consts[0] is not None else (
                np.float32(attrs["min"].f) if "min" in attrs else np.float32(-np.inf))
            hi = consts[1] if len(consts) > 1 and consts[1] is not None else (
                np.float32(attrs["max"].f) if "max" in attrs else np.float32(np.inf))
            return (lambda v: np.minimum(np.maximum(v, np.float32(lo)), np.float32(hi))), None, dqs
        if node.op_type == "BatchNormalization" and len(consts) == 4:
            attrs = {a.name: a for a in node.attribute}
            if attrs.get("training_mode") is not None and attrs["training_mode"].i:
                return None
            epsilon = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
            scale, bias, mean, var = consts
            return (lambda v: batch_norm(v, scale, bias, mean, var, epsilon)), scale.size, dqs
        return None

    def _constant(self, name):
        """(value, its DequantizeLinear or None) of a constant float input: an initializer, or a
        DequantizeLinear of one (the quantizer quantizes BatchNormalization's scale and bias),
        dequantized as onnxruntime does; (None, None) when it is not constant."""
        if name in self.graph.constants:
            return self.graph.constants[name].astype(np.float32), None
        dq = self.graph.dequantized(name)
        if dq is None or dq.int_name not in self.graph.constants:
            return None, None
        value = self.graph.constants[dq.int_name]
        shape = None
        if dq.scale.size > 1:
            shape = [1] * value.ndim
            shape[dq.axis % value.ndim] = -1
        return dequantize(value, dq, shape), dq

    # -- DQ -> GlobalAveragePool -> Q --------------------------------------------------------------
    def global_average_pool(self, node):
        x = self.graph.dequantized(node.input[0])
        quant = self.graph.quantizer(node)
        if x is None or quant is None or quant[1] is not None:
            return None
        y = quant[0]
        if not _per_tensor_8bit(x, y) or x.elem_type != y.elem_type:
            return None
        shape = self.shapes.get(node.input[0])
        if not shape or len(shape) < 3 or not all(d > 0 for d in shape):
            return None
        stem = node.name or node.output[0]
        nodes = self._gap_nodes(x.int_name, x, y, shape, stem, y.int_name)
        self.consume([node, y.node], [x])
        return nodes, "QLinearGlobalAveragePool"

    def _gap_nodes(self, x_name, x, y, shape, stem, output):
        build, nodes = self.build, []
        size = int(np.prod(shape[2:]))
        axes = list(range(2, len(shape)))
        wide = _as_int32(build, nodes, x_name, stem)
        if self.opset >= 13:
            total = build.node(nodes, "ReduceSum", [wide, build.const(np.array(axes, np.int64),
                                                                      f"{stem}_axes")],
                               f"{stem}_sum", keepdims=1)
        else:
            total = build.node(nodes, "ReduceSum", [wide], f"{stem}_sum", axes=axes, keepdims=1)
        zx = int(x.zero_point.reshape(-1)[0])
        acc = build.node(nodes, "Add", [total, build.const(np.int32(-zx * size), f"{stem}_bias")],
                         f"{stem}_acc")
        f32 = np.float32
        scale = f32(f32(x.scale.reshape(-1)[0]) /
                    f32(f32(y.scale.reshape(-1)[0]) * f32(size)))  # MLAS: s_x / (s_y * N)
        _requantize(build, nodes, acc, scale, y, stem, output)
        return nodes

    # -- DQ(a), DQ(B), DQ(C) -> Gemm -> Q ----------------------------------------------------------
    def gemm(self, node):
        inputs = list(node.input)
        if len(inputs) not in (2, 3):
            return None
        a, b = (self.graph.dequantized(n) for n in inputs[:2])
        bias = self.graph.dequantized(inputs[2]) if len(inputs) == 3 and inputs[2] else None
        quant = self.graph.quantizer(node)
        if a is None or b is None or quant is None or (len(inputs) == 3 and inputs[2] and
                                                       bias is None):
            return None
        y, relu = quant
        attrs = {at.name: at for at in node.attribute}
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        beta = attrs["beta"].f if "beta" in attrs else 1.0
        trans_a = attrs["transA"].i if "transA" in attrs else 0
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        weights = self.graph.constants.get(b.int_name)
        if (trans_a or weights is None or weights.ndim != 2 or not _per_tensor_8bit(a, y)
                or b.elem_type not in INT8_TYPES or a.elem_type != y.elem_type
                or (bias is not None and (beta != 1.0 or bias.int_name not in self.graph.constants
                                          or np.any(bias.zero_point)))):
            return None
        columns = weights.shape[0] if trans_b else weights.shape[1]
        if b.scale.size not in (1, columns) or b.zero_point.size != b.scale.size:
            return None
        if b.scale.size > 1 and b.axis % 2 != (0 if trans_b else 1):
            return None
        if bias is not None and not _bias_matches(bias, a, b, alpha):
            return None
        stem = node.name or node.output[0]
        nodes = self._gemm_nodes(a.int_name, a, weights, b, bias, y, alpha, trans_b, stem,
                                 y.int_name)
        self.consume([node, y.node] + ([relu] if relu else []), [a, b] + ([bias] if bias else []))
        return nodes, "QGemm"

    def _gemm_nodes(self, a_name, a, weights, b, bias, y, alpha, trans_b, stem, output):
        build, nodes = self.build, []
        matrix = weights.T if trans_b else weights  # [K, N]
        zb = b.zero_point.reshape(-1)
        b_zp = build.const(zb if zb.size > 1 else zb.reshape(()), f"{stem}_b_zero_point")
        a_zp = build.const(a.zero_point.reshape(()), f"{stem}_a_zero_point")
        acc = build.node(nodes, "MatMulInteger",
                         [a_name, build.const(np.ascontiguousarray(matrix), f"{stem}_b"),
                          a_zp, b_zp], f"{stem}_acc")
        if bias is not None:
            acc = build.node(nodes, "Add", [acc, build.const(
                self.graph.constants[bias.int_name].astype(np.int32).reshape(-1), f"{stem}_c")],
                f"{stem}_biased")
        f32 = np.float32
        scales = (f32(f32(alpha) * f32(a.scale.reshape(-1)[0])) *
                  b.scale.astype(f32).reshape(-1)).astype(f32)  # QGemm: alpha * s_a * s_b[i]
        multiplier = (scales / f32(y.scale.reshape(-1)[0])).astype(f32)
        _requantize(build, nodes, acc, multiplier if multiplier.size > 1 else multiplier[0],
                    y, stem, output)
        return nodes

    # -- DequantizeLinear left (its output feeds float operators or is a model output) -------
    def dequantize(self, node):
        """float(x - zp) * scale with the scale a 1-element tensor: TVM's c target prints a
        scalar float constant as a literal of 7 digits, which is not the float32 scale."""
        if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
            return None
        elem_type = self.graph.types.get(node.input[0])
        zp = self.graph.constants.get(node.input[2]) if len(node.input) > 2 else None
        if elem_type is None and zp is not None:  # after a contrib operator: no inferred type
            elem_type = {np.dtype(np.uint8): 2, np.dtype(np.int8): 3}.get(zp.dtype)
        x = self.graph._quant(node, node.input[0], elem_type)
        if x is None or not _per_tensor_8bit(x):
            return None
        build, nodes, stem = self.build, [], node.name or node.output[0]
        wide = _as_int32(build, nodes, x.int_name, stem)
        shifted = build.node(nodes, "Sub", [wide, build.const(
            x.zero_point.astype(np.int32).reshape(()), f"{stem}_zp")], f"{stem}_shifted")
        as_float = build.node(nodes, "Cast", [shifted], f"{stem}_float", to=1)
        build.node(nodes, "Mul", [as_float, build.const(
            x.scale.astype(np.float32).reshape(1), f"{stem}_scale")], stem, output=node.output[0])
        return nodes

    def quantize(self, node):
        """A QuantizeLinear left (of a model input or of a float operator): x / scale with the
        scale a 1-element tensor (not a C literal), then MLAS's clamp, round and zero point."""
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx"):
            return None
        y = self.graph._quant(node, node.output[0], self.graph.types.get(node.output[0]))
        if y is None or not _per_tensor_8bit(y) or self.graph.types.get(node.input[0]) != 1:
            return None
        build, nodes, stem = self.build, [], node.name or node.output[0]
        scaled = build.node(nodes, "Div", [node.input[0], build.const(
            y.scale.astype(np.float32).reshape(1), f"{stem}_scale")], f"{stem}_scaled")
        _requantize(build, nodes, scaled, np.ones(1, np.float32), y, stem, node.output[0])
        return nodes

    # -- QOperator nodes (com.microsoft) -----------------------------------------------------------
    def qoperator(self, node):
        """com.microsoft QLinearAdd / QLinearGlobalAveragePool / QGemm with constant scales."""
        consts = self.graph.constants
        names = list(node.input)

        def quant(i, value_name):
            scale = consts.get(names[i]) if i < len(names) and names[i] else None
            zp = consts.get(names[i + 1]) if i + 1 < len(names) and names[i + 1] else None
            elem = self.graph.types.get(value_name)
            if zp is not None:  # contrib outputs have no inferred type: the zero point's
                elem = {np.dtype(np.uint8): 2, np.dtype(np.int8): 3}.get(zp.dtype, elem)
            if scale is None or elem not in INT8_TYPES:
                return None
            if zp is None:
                zp = np.zeros(scale.shape, INT8_TYPES[elem])
            return _Quant(node, value_name, elem, scale.astype(np.float32), zp, 1)

        stem = node.name or node.output[0]
        out = node.output[0]
        if node.op_type == "QLinearAdd" and len(names) >= 7:
            a, b, y = quant(1, names[0]), quant(4, names[3]), quant(6, out)
            if _per_tensor_8bit(a, b, y) and a.elem_type == b.elem_type == y.elem_type:
                self.removed.add(id(node))
                shapes = [self.shapes.get(n) for n in (names[0], names[3])]
                if all(shapes):  # contrib outputs have no inferred shape: the broadcast one
                    self.shapes[out] = list(np.broadcast_shapes(*map(tuple, shapes)))
                return self._add_nodes(names[0], names[3], a, b, y, stem, out), "QLinearAdd table"
        if node.op_type == "QLinearGlobalAveragePool":
            attrs = {at.name: at for at in node.attribute}
            x, y = quant(1, names[0]), quant(3, out)
            shape = self.shapes.get(names[0])
            if (_per_tensor_8bit(x, y) and x.elem_type == y.elem_type and not
                    (attrs.get("channels_last") and attrs["channels_last"].i) and shape
                    and len(shape) >= 3 and all(d > 0 for d in shape)):
                self.removed.add(id(node))
                return self._gap_nodes(names[0], x, y, shape, stem, out), "QLinearGlobalAveragePool"
        if node.op_type == "QGemm" and len(names) >= 9:
            return self._qgemm(node, names, quant, stem, out)
        return None

    def _qgemm(self, node, names, quant, stem, out):
        attrs = {at.name: at for at in node.attribute}
        a, b, y = quant(1, names[0]), quant(4, names[3]), quant(7, out)
        weights = self.graph.constants.get(names[3])
        bias = names[6] if names[6] else None
        if (a is None or b is None or y is None or weights is None or weights.ndim != 2
                or (bias is not None and bias not in self.graph.constants)
                or (attrs.get("transA") and attrs["transA"].i) or not _per_tensor_8bit(a, y)):
            return None
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        bias_q = None
        if bias is not None:
            bias_q = _Quant(node, bias, 6, np.ones(1, np.float32), np.zeros(1, np.int32), 1)
        self.removed.add(id(node))
        return (self._gemm_nodes(names[0], a, weights, b, bias_q, y, alpha, trans_b, stem, out),
                "QGemm")


def _bias_matches(bias: _Quant, a: _Quant, b: _Quant, alpha: float) -> bool:
    """The int32 bias is on the accumulator's scale (s_a * s_b), as onnxruntime requires."""
    want = (np.float32(a.scale.reshape(-1)[0]) * b.scale.astype(np.float32).reshape(-1))
    return (bias.elem_type == 6 and alpha == 1.0 and bias.scale.size in (1, want.size)
            and np.allclose(np.broadcast_to(bias.scale.reshape(-1), want.shape), want,
                            rtol=1e-6, atol=0))


_GROUPS = {"Add": "add", "GlobalAveragePool": "global_average_pool", "Gemm": "gemm",
           "BatchNormalization": "elementwise", "Relu": "elementwise", "Clip": "elementwise"}


def rewrite_quantized_ops(model, add_kernel: str | None = None) -> RewriteResult:
    """A copy of `model` with onnxruntime's quantized kernels (see the module docstring) written
    as standard ONNX integer arithmetic; `model` itself is not changed. `add_kernel`: the MLAS
    QLinearAdd kernel to reproduce (avx2 / sse; default this CPU's)."""
    import onnx

    if not any(n.op_type in ("DequantizeLinear", "QLinearAdd", "QGemm",
                             "QLinearGlobalAveragePool") for n in model.graph.node):
        return RewriteResult(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    rewriter = _Rewriter(out, add_kernel or host_add_kernel())
    for node in list(out.graph.node):
        if id(node) in rewriter.removed:
            continue
        if node.domain == _MS:
            found = rewriter.qoperator(node)
        elif node.domain in ("", "ai.onnx") and node.op_type in _GROUPS:
            found = getattr(rewriter, _GROUPS[node.op_type])(node)
        else:
            found = None
        if found is not None:
            nodes, what = found
            rewriter.replaced[id(node)] = nodes
            rewriter.result.rewritten.append((node.name or node.output[0], what))
    for node in list(out.graph.node):
        if id(node) not in rewriter.removed and id(node) not in rewriter.replaced:
            found = rewriter.dequantize(node) or rewriter.quantize(node)
            if found is not None:
                rewriter.replaced[id(node)] = found
    if not rewriter.replaced:
        return RewriteResult(model)
    # the new nodes take the operator's place, then a stable topological order puts each after
    # its inputs (a group's inputs may be produced after the operator, e.g. by its other DQ)
    nodes = []
    for node in out.graph.node:
        if id(node) in rewriter.replaced:
            nodes.extend(rewriter.replaced[id(node)])
        elif id(node) not in rewriter.removed:
            nodes.append(node)
    available = _graph_names(out) | {t.name for t in rewriter.build.initializers}
    del out.graph.node[:]
    out.graph.node.extend(_topological(nodes, available))
    out.graph.initializer.extend(rewriter.build.initializers)
    _drop_unused(out.graph)
    _add_functions(out)
    return RewriteResult(out, rewriter.result.rewritten)


def _graph_names(model):
    return ({t.name for t in model.graph.initializer} | {v.name for v in model.graph.input}
            | {""})


def _topological(nodes, available):
    """Nodes in an order where every input is produced before it is read (stable)."""
    available = set(available)
    ordered, remaining = [], list(nodes)
    while remaining:
        progress = []
        for node in remaining:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
                progress.append(node)
        if not progress:  # a cycle or a missing input: keep the rest as they are
            ordered.extend(n for n in remaining if n not in progress)
            break
        placed = {id(n) for n in progress}
        remaining = [n for n in remaining if id(n) not in placed]
    return ordered


# ---- where the result can still differ ---------------------------------------------------------
# pairs of uint8 x int8 products onnxruntime's AVX2 kernel adds in int16 (VPMADDUBSW, saturating)
_INT16_MAX = 32767
_DATA_MOVEMENT = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                  "Identity", "Slice", "Gather", "Concat", "Split", "Resize", "Expand",
                  "DepthToSpace", "SpaceToDepth", "Pad", "Tile"}


def _host_has_vnni() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return bool(features.get("AVX512VNNI") or features.get("AVXVNNI"))


def exactness_notes(model, vnni: bool | None = None) -> list:
    """Why the imported `model` (after fuse_qdq and rewrite_quantized_ops) may not equal
    onnxruntime exactly on this CPU, one sentence per cause; [] when it should."""
    inferred = _inferred_graph(model)
    types = _elem_types(inferred)
    consts = {t.name for t in model.graph.initializer}
    values = {t.name: t for t in model.graph.initializer}
    notes = []
    vnni = _host_has_vnni() if vnni is None else vnni
    saturating = []
    weight_input = {"QLinearConv": (0, 3), "QLinearMatMul": (0, 3), "MatMulInteger": (0, 1)}
    for node in model.graph.node:
        where = weight_input.get(node.op_type)
        if where is None or len(node.input) <= where[1]:
            continue
        act, wts = node.input[where[0]], node.input[where[1]]
        # int8 activations too: onnxruntime on x86 shifts them to uint8 (QDQS8ToU8Transformer)
        if types.get(act) not in (2, 3) or wts not in consts:
            continue
        from onnx import numpy_helper

        weights = numpy_helper.to_array(values[wts])
        if weights.dtype == np.int8 and 255 * 2 * int(np.abs(weights.astype(np.int64)).max()) \
                > _INT16_MAX:
            saturating.append(node.name or node.output[0])
    if saturating and not vnni:
        notes.append(f"{len(saturating)} 8-bit x int8 layer(s) have weights above 64 in magnitude; "
                     f"onnxruntime's u8s8 kernel on this CPU (AVX2 without VNNI) adds pairs of "
                     f"products in saturating int16 (VPMADDUBSW), Gemmini adds them exactly "
                     f"(quantize with reduce_range=True, 7-bit weights, for exact results)")
    producer = {o: n for n in model.graph.node for o in n.output}
    int8_activations = any(
        (n.op_type == "QuantizeLinear" and types.get(n.output[0]) == 3)
        or (n.op_type in ("QLinearConv", "QLinearMatMul") and types.get(n.input[0]) == 3)
        for n in model.graph.node)
    if int8_activations and platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        notes.append("int8 activations: onnxruntime on x86 runs the QDQ groups it does not "
                     "convert to uint8 as float32 operators (its QDQIsInt8Allowed is false "
                     "there), which can round a value one step apart from the integer kernels")
    # onnxruntime fuses DQ-Softmax-Q into QLinearSoftmax (com.microsoft), which normalizes with
    # an exp lookup table in its own arithmetic; the rewrite computes the float Softmax.
    quantized = set()
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" or n.op_type in REQUANTIZE.values():
            source = n.input[0]
            if source in producer and producer[source].op_type == "Div":  # the rewritten Q's scale
                source = producer[source].input[0]
            quantized.add(source)
    softmax = [n for n in model.graph.node if n.op_type == "Softmax" and n.output[0] in quantized]
    if softmax:
        notes.append(f"{len(softmax)} quantized Softmax: onnxruntime runs DequantizeLinear-Softmax-"
                     f"QuantizeLinear as its QLinearSoftmax (an exp lookup table with its own "
                     f"rounding), which can put an output one quantization step from the float "
                     f"Softmax computed here")
    kept = sorted({producer[n.input[0]].op_type for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and n.input[0] in producer
                   and producer[n.input[0]].op_type not in _DATA_MOVEMENT | {"DequantizeLinear",
                                                                            "Softmax"}
                   and producer[n.input[0]].domain in ("", "ai.onnx")})
    if kept:
        notes.append(f"float operators quantized by QuantizeLinear that are not rewritten "
                     f"({', '.join(kept)}): their float32 result may round apart from "
                     f"onnxruntime's")
    return notes
