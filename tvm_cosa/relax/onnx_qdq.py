"""QDQ ONNX models to integer operators, as onnxruntime's QDQ fusion does, before the import.

onnxruntime's quantizer writes int8 models in QDQ form: the int8 tensors are dequantized
(DequantizeLinear) into a float Conv / MatMul whose output is quantized again (QuantizeLinear).
TVM would import that as a float operator, which no int8 accelerator runs. onnxruntime itself
fuses each such group into QLinearConv / QLinearMatMul (its QDQSelectorActionTransformer);
`fuse_qdq` does the same rewrite on the ONNX graph, so the integer converters of `onnx_int8`
import it as an int8 x int8 -> int32 operator with onnxruntime's requantization:

    DQ(x) , DQ(w) [, DQ(bias int32)] -> Conv [-> Relu] -> Q   =>   QLinearConv
    DQ(a) , DQ(b)                     -> MatMul [-> Relu] -> Q  =>   QLinearMatMul

A group is fused only when it is exact (onnxruntime's ConvNodeGroupSelector /
MatMulNodeGroupSelector conditions, plus what the QLinear operators can express):
- every input of the Conv / MatMul comes from a DequantizeLinear (one with other consumers
  stays for them: onnxruntime duplicates it); the operator's only consumer is one
  QuantizeLinear (or a Relu whose only consumer is that QuantizeLinear, with zero point at the
  type's minimum, so the Relu changes nothing), and neither is a graph output;
- activations and weights are int8 / uint8 (int8 activations need int8 weights), the output of
  the activation's type, the bias int32 with zero point 0 and scale x_scale * w_scale;
- scales and zero points are constant initializers: per tensor, except the weight's, which may
  be per output channel (Conv, axis 0) or per column (2-D MatMul B, axis 1); no blocked DQ.
Everything else is left as it is (it imports as float operators and still runs correctly).
int8 activations are fused too, although onnxruntime on x86 CPUs leaves those groups float
(its QDQIsInt8Allowed): the result is then onnxruntime's QLinearConv / QLinearMatMul, which can
differ by one step from its float QDQ path.
Gemm, Add, GlobalAveragePool and the float operators between DQ and Q are onnx_qops' (run after
this fusion by frontend.import_onnx).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INT8_TYPES = {2: np.uint8, 3: np.int8}  # onnx TensorProto UINT8, INT8
INT32 = 6


@dataclass
class FusionResult:
    """The rewritten model and, per fused operator, its name and new operator type."""

    model: object  # onnx.ModelProto
    fused: list = field(default_factory=list)  # [(original node name, "QLinearConv"), ...]


@dataclass
class _Quant:
    """One DequantizeLinear / QuantizeLinear: its integer-side tensor, scale, zero point."""

    node: object
    int_name: str  # DQ input / Q output
    elem_type: int
    scale: np.ndarray
    zero_point: np.ndarray  # of the integer type; 0 when absent
    axis: int


class _Graph:
    """Look-ups over one ONNX graph: producers, consumers, constant initializers, types."""

    def __init__(self, model, types: dict):
        import onnx

        graph = model.graph
        self.graph = graph
        self.inputs = {v.name for v in graph.input}
        self.constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer
                          if t.name not in self.inputs}  # a graph input may override it
        self.outputs = {v.name for v in graph.output}
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.uses: dict[str, int] = {}
        for node in graph.node:
            for name in [*node.input, *_subgraph_inputs(node)]:
                self.uses[name] = self.uses.get(name, 0) + 1
        self.types = types

    def only_consumer(self, name: str):
        """The node that alone reads `name` (once), if `name` is not a graph output."""
        if name in self.outputs or self.uses.get(name) != 1:
            return None
        return next((n for n in self.graph.node if name in n.input), None)

    def dequantized(self, name: str):
        """The DequantizeLinear producing `name` as a _Quant, else None. It may have other
        consumers: onnxruntime gives each its own copy first (EnsureUniqueDQForNodeUnit), so
        the group reads the DQ's input and the DQ stays for the others."""
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
            return None
        if name in self.outputs:
            return None
        return self._quant(node, node.input[0], self.types.get(node.input[0]))

    def quantizer(self, node):
        """`node`'s output quantized by its only consumer QuantizeLinear (through a Relu that
        the quantization makes redundant): (_Quant, the Relu or None), or None."""
        nxt = self.only_consumer(node.output[0])
        relu = None
        if nxt is not None and nxt.op_type == "Relu":
            relu, nxt = nxt, self.only_consumer(nxt.output[0])
        if nxt is None or nxt.op_type != "QuantizeLinear" or nxt.domain not in ("", "ai.onnx"):
            return None
        q = self._quant(nxt, nxt.output[0], self.types.get(nxt.output[0]))
        if q is None or q.scale.size != 1:
            return None
        lowest = np.iinfo(q.zero_point.dtype).min
        if relu is not None and int(q.zero_point.reshape(-1)[0]) != lowest:
            return None  # the Relu changes the result: not fused (onnxruntime does the same)
        return q, relu

    def _quant(self, node, int_name, elem_type):
        attrs = {a.name: a for a in node.attribute}
        if "block_size" in attrs and attrs["block_size"].i > 0:
            return None
        scale = self.constants.get(node.input[1])
        zp_name = node.input[2] if len(node.input) > 2 else ""
        zero_point = self.constants.get(zp_name) if zp_name else None
        if scale is None or scale.dtype != np.float32 or (zp_name and zero_point is None):
            return None
        if elem_type not in INT8_TYPES and elem_type != INT32:
            return None  # unknown, or a type the QLinear operators do not take
        if zero_point is None:  # absent: 0 of the integer type
            zero_point = np.zeros(scale.shape, INT8_TYPES.get(elem_type, np.int32))
        axis = attrs["axis"].i if "axis" in attrs else 1
        return _Quant(node, int_name, elem_type, scale, zero_point, axis)


def _subgraph_inputs(node):
    """Names read inside `node`'s subgraphs (If / Loop / Scan bodies): uses we must count."""
    names = []
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                names += [*inner.input, *_subgraph_inputs(inner)]
    return names


def _inferred_graph(model):
    """The graph with onnx's shape inference applied (best effort: what it cannot infer is
    unknown, and unknown types / ranks are not fused)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - onnx raises several types on models it cannot infer
        return model.graph


def _values(graph):
    return [v for v in [*graph.input, *graph.value_info, *graph.output]
            if v.type.HasField("tensor_type")]


def _elem_types(graph) -> dict:
    """Element type of every tensor whose type is known (initializers, values)."""
    types = {t.name: t.data_type for t in graph.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in _values(graph)})
    return types


def _value_ranks(graph) -> dict:
    return {v.name: len(v.type.tensor_type.shape.dim) for v in _values(graph)
            if v.type.tensor_type.HasField("shape")}


def _rank(graph: _Graph, name: str, model_shapes: dict):
    if name in graph.constants:
        return graph.constants[name].ndim
    return model_shapes.get(name)


def _per_tensor(q: _Quant) -> bool:
    return q.scale.size == 1 and q.zero_point.size == 1


def _per_axis(q: _Quant, axis: int, rank: int, length: int) -> bool:
    """Scale (and zero point) per slice of `axis` of a rank-`rank` tensor, or per tensor."""
    if _per_tensor(q):
        return True
    return (q.scale.ndim == 1 and q.scale.size == length and q.zero_point.shape == q.scale.shape
            and q.axis % rank == axis)


def _bias_exact(bias: _Quant, x: _Quant, w: _Quant) -> bool:
    """The int32 bias is the accumulator's: zero point 0, scale x_scale * w_scale."""
    want = np.float32(x.scale.reshape(())) * w.scale.astype(np.float32).reshape(-1)
    return (bias.elem_type == INT32 and not np.any(bias.zero_point)
            and bias.scale.size in (1, want.size)
            and np.allclose(np.broadcast_to(bias.scale.reshape(-1), want.shape), want,
                            rtol=1e-6, atol=0))


def _types_fit(act: _Quant, wts: _Quant, out: _Quant) -> bool:
    """onnxruntime's type rule: 8-bit operands, int8 activations with int8 weights, the
    output of the activation's type."""
    if act.elem_type not in INT8_TYPES or wts.elem_type not in INT8_TYPES:
        return False
    if act.elem_type == 3 and wts.elem_type != 3:
        return False
    return out.elem_type == act.elem_type


def _conv_group(graph: _Graph, node, ranks):
    inputs = [n for n in node.input if n]
    if len(inputs) not in (2, 3) or len(inputs) != len(node.input):
        return None
    deq = [graph.dequantized(n) for n in inputs]
    quant = graph.quantizer(node)
    if any(d is None for d in deq) or quant is None:
        return None
    (x, w, *bias), (y, relu) = deq, quant
    w_rank = _rank(graph, w.int_name, ranks)
    if w_rank != 4 or not _types_fit(x, w, y) or not _per_tensor(x):
        return None
    out_channels = graph.constants[w.int_name].shape[0] if w.int_name in graph.constants else None
    if not _per_tensor(w) and (out_channels is None or not _per_axis(w, 0, 4, out_channels)):
        return None
    if bias and not _bias_exact(bias[0], x, w):
        return None
    return x, w, (bias[0] if bias else None), y, relu


def _matmul_group(graph: _Graph, node, ranks):
    if len(node.input) != 2:
        return None
    a, b = (graph.dequantized(n) for n in node.input)
    quant = graph.quantizer(node)
    if a is None or b is None or quant is None:
        return None
    y, relu = quant
    if not _types_fit(a, b, y) or not _per_tensor(a):
        return None
    if not _per_tensor(b):
        b_value = graph.constants.get(b.int_name)
        if b_value is None or b_value.ndim != 2 or not _per_axis(b, 1, 2, b_value.shape[1]):
            return None
    return a, b, None, y, relu


class _Initializers:
    """New initializers (zero points that were absent), named uniquely."""

    def __init__(self, graph):
        self.graph = graph
        self.taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
        self.taken |= {v.name for v in graph.input}

    def name_of(self, q: _Quant, stem: str) -> str:
        zp_name = q.node.input[2] if len(q.node.input) > 2 else ""
        if zp_name:
            return zp_name
        from onnx import numpy_helper

        name, i = f"{stem}_zero_point", 0
        while name in self.taken:
            i += 1
            name = f"{stem}_zero_point_{i}"
        self.taken.add(name)
        self.graph.initializer.append(numpy_helper.from_array(q.zero_point, name))
        return name


def _qlinear_node(node, group, inits: _Initializers):
    """The QLinearConv / QLinearMatMul replacing `node` and its Q / DQ nodes."""
    from onnx import helper

    x, w, bias, y, _ = group
    stem = node.name or node.output[0]
    inputs = [x.int_name, x.node.input[1], inits.name_of(x, f"{stem}_x"),
              w.int_name, w.node.input[1], inits.name_of(w, f"{stem}_w"),
              y.node.input[1], inits.name_of(y, f"{stem}_y")]
    if bias is not None:
        inputs.append(bias.int_name)  # the int32 accumulator bias itself (scale checked)
    op = "QLinearConv" if node.op_type == "Conv" else "QLinearMatMul"
    fused = helper.make_node(op, inputs, [y.int_name], name=f"{stem}_qlinear")
    if op == "QLinearConv":
        fused.attribute.extend(node.attribute)  # kernel_shape, pads, strides, dilations, group
    return fused


def fuse_qdq(model) -> FusionResult:
    """A copy of `model` with every exact QDQ Conv / MatMul group replaced by QLinearConv /
    QLinearMatMul (see the module docstring); the model itself is not changed."""
    import onnx

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 10 or not any(n.op_type == "DequantizeLinear" for n in model.graph.node):
        return FusionResult(model)
    inferred = _inferred_graph(model)
    graph = _Graph(model, _elem_types(inferred))
    ranks = _value_ranks(inferred)
    groups = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        match = {"Conv": _conv_group, "MatMul": _matmul_group}.get(node.op_type)
        group = match(graph, node, ranks) if match else None
        if group is not None:
            groups[id(node)] = group
    if not groups:
        return FusionResult(model)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _Initializers(out.graph)
    removed, replaced, fused, fused_reads = set(), {}, [], {}
    for node in model.graph.node:
        group = groups.get(id(node))
        if group is None:
            continue
        x, w, bias, y, relu = group
        for dq in [x, w] + ([bias] if bias else []):
            name = dq.node.output[0]
            fused_reads[name] = fused_reads.get(name, 0) + 1
            if fused_reads[name] == graph.uses[name]:  # no consumer left
                removed.add(id(dq.node))
        removed.update(id(p) for p in [y.node] + ([relu] if relu else []))
        replaced[id(node)] = _qlinear_node(node, group, inits)
        fused.append((node.name or node.output[0], replaced[id(node)].op_type))
    # the fused node takes the operator's place: its inputs exist there, its output's
    # consumers all come after the QuantizeLinear it replaces
    nodes = [replaced.get(id(n), n) for n in model.graph.node if id(n) not in removed]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    _drop_unused(out.graph)
    return FusionResult(out, fused)


def _drop_unused(graph):
    """Remove value_info of tensors that no longer exist and initializers no node reads
    (the dequantized weights' scales stay: the fused operators read them)."""
    produced = {o for n in graph.node for o in n.output}
    read = {i for n in graph.node for i in [*n.input, *_subgraph_inputs(n)]}
    read |= {v.name for v in graph.output}
    graph_inputs = {v.name for v in graph.input}
    keep_vi = [v for v in graph.value_info if v.name in produced or v.name in graph_inputs]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    keep_init = [t for t in graph.initializer if t.name in read or t.name in graph_inputs]
    del graph.initializer[:]
    graph.initializer.extend(keep_init)
