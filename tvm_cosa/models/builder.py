"""A small ONNX graph builder with seeded random weights (nothing is downloaded).

It writes what exporters write, so the models exercise the same import paths as real files:
PyTorch-style `Constant` nodes for shapes and clip bounds, `Clip` as ReLU6, `Flatten`, `Gemm`
with `transB=1` (a Linear layer), BatchNormalization after convolutions, and the opset-dependent
forms of Clip, ReduceMean, Unsqueeze, LayerNormalization and Gelu for opsets 11 to 21.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import InputError

MIN_OPSET, MAX_OPSET = 11, 21
# The newest IR version onnxruntime and TVM both read; older opsets keep their own IR version.
_IR_VERSION = {11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
_DTYPES = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8,
           "int32": TensorProto.INT32, "int64": TensorProto.INT64}


class OnnxBuilder:
    def __init__(self, name: str, *, opset: int = 17, seed: int = 0):
        if isinstance(opset, bool) or not isinstance(opset, int) or not (
                MIN_OPSET <= opset <= MAX_OPSET):
            raise InputError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET}, "
                             f"got {opset!r}", source=name, field="opset")
        self.name, self.opset = name, opset
        self.rng = np.random.default_rng(seed)
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._count = {}

    # ---- names and tensors --------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        n = self._count.get(hint, 0)
        self._count[hint] = n + 1
        return f"{hint}_{n}" if n else hint

    def input(self, name: str, shape, dtype="float32") -> str:
        self.inputs.append(helper.make_tensor_value_info(name, _DTYPES[dtype], list(shape)))
        return name

    def output(self, name: str, shape, dtype="float32"):
        self.outputs.append(helper.make_tensor_value_info(name, _DTYPES[dtype], list(shape)))

    def initializer(self, hint: str, array: np.ndarray) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def constant(self, hint: str, array) -> str:
        """A `Constant` node, as PyTorch's exporter writes for shapes and scalars."""
        array = np.asarray(array)
        out = self.fresh(hint)
        self.nodes.append(helper.make_node("Constant", [], [out],
                                           value=numpy_helper.from_array(array, out + "_value")))
        return out

    def node(self, op: str, inputs, hint=None, n_out=1, **attrs):
        outs = [self.fresh(hint or op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.fresh("n_" + op),
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def weight(self, hint: str, shape, fan_in: int, gain: float = 2.0) -> str:
        """He-initialised weights: activations keep their scale through deep ReLU networks."""
        std = np.sqrt(gain / max(1, fan_in))
        return self.initializer(hint, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def small(self, hint: str, shape, scale=0.05) -> str:
        return self.initializer(hint, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    # ---- layers -------------------------------------------------------------------------------
    def conv(self, x, cin, cout, k, *, stride=1, pad=None, dilation=1, groups=1, bias=True,
             hint="conv"):
        pad = (dilation * (k - 1)) // 2 if pad is None else pad
        w = self.weight(hint + ".weight", (cout, cin // groups, k, k), fan_in=cin // groups * k * k)
        inputs = [x, w] + ([self.small(hint + ".bias", (cout,))] if bias else [])
        return self.node("Conv", inputs, hint, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, dilations=[dilation, dilation], group=groups)

    def batchnorm(self, x, c, *, gamma=1.0, hint="bn"):
        scale = self.initializer(hint + ".weight", (gamma * (1 + 0.1 * self.rng.standard_normal(
            c))).astype(np.float32))
        beta = self.small(hint + ".bias", (c,))
        mean = self.small(hint + ".running_mean", (c,))
        var = self.initializer(hint + ".running_var",
                               (1 + 0.1 * self.rng.random(c)).astype(np.float32))
        return self.node("BatchNormalization", [x, scale, beta, mean, var], hint, epsilon=1e-5)

    def relu(self, x):
        return self.node("Relu", [x])

    def relu6(self, x):
        """Clip(0, 6) with its bounds as Constant node inputs (opset >= 11, as exporters do)."""
        lo = self.constant("clip_min", np.array(0.0, dtype=np.float32))
        hi = self.constant("clip_max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, lo, hi], "relu6")

    def add(self, a, b):
        return self.node("Add", [a, b])

    def maxpool(self, x, k=3, stride=2, pad=1):
        return self.node("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4)

    def avgpool(self, x, k=2, stride=2):
        return self.node("AveragePool", [x], kernel_shape=[k, k], strides=[stride, stride])

    def global_avgpool(self, x):
        return self.node("GlobalAveragePool", [x])

    def flatten(self, x):
        return self.node("Flatten", [x], axis=1)

    def flatten_by_shape(self, x):
        """`x.view(x.size(0), -1)` as older PyTorch exports it: Shape, Gather, Unsqueeze,
        Concat, Reshape."""
        shape = self.node("Shape", [x])
        batch = self.node("Gather", [shape, self.constant("zero", np.array(0, np.int64))],
                          axis=0)
        batch = self.unsqueeze(batch, [0])
        new_shape = self.node("Concat", [batch, self.constant("minus_one",
                                                              np.array([-1], np.int64))], axis=0)
        return self.node("Reshape", [x, new_shape])

    def unsqueeze(self, x, axes):
        if self.opset >= 13:
            return self.node("Unsqueeze", [x, self.constant("axes", np.array(axes, np.int64))])
        return self.node("Unsqueeze", [x], axes=list(axes))

    def reduce_mean(self, x, axes, keepdims=1):
        if self.opset >= 18:
            return self.node("ReduceMean", [x, self.constant("axes", np.array(axes, np.int64))],
                             keepdims=keepdims)
        return self.node("ReduceMean", [x], axes=list(axes), keepdims=keepdims)

    def linear(self, x, cin, cout, hint="fc"):
        """PyTorch's Linear on a 2-D input: Gemm(x, W, b, transB=1) with W of shape (out, in)."""
        w = self.weight(hint + ".weight", (cout, cin), fan_in=cin, gain=1.0)
        b = self.small(hint + ".bias", (cout,))
        return self.node("Gemm", [x, w, b], hint, transB=1)

    def matmul_linear(self, x, cin, cout, hint="linear"):
        """PyTorch's Linear on a 3-D input: MatMul with the transposed weight, then Add."""
        w = self.weight(hint + ".weight", (cin, cout), fan_in=cin, gain=1.0)
        y = self.node("MatMul", [x, w], hint)
        return self.node("Add", [y, self.small(hint + ".bias", (cout,))])

    def reshape(self, x, shape):
        return self.node("Reshape", [x, self.constant("shape", np.array(shape, np.int64))])

    def transpose(self, x, perm):
        return self.node("Transpose", [x], perm=list(perm))

    def layernorm(self, x, dim, hint="ln"):
        gamma = self.initializer(hint + ".weight", (1 + 0.1 * self.rng.standard_normal(dim))
                                 .astype(np.float32))
        beta = self.small(hint + ".bias", (dim,))
        if self.opset >= 17:
            return self.node("LayerNormalization", [x, gamma, beta], hint, axis=-1,
                             epsilon=1e-5)
        mean = self.reduce_mean(x, [-1])
        centered = self.node("Sub", [x, mean])
        var = self.reduce_mean(self.node("Mul", [centered, centered]), [-1])
        eps = self.constant("eps", np.array(1e-5, np.float32))
        normed = self.node("Div", [centered, self.node("Sqrt", [self.node("Add", [var, eps])])])
        return self.node("Add", [self.node("Mul", [normed, gamma]), beta])

    def gelu(self, x):
        if self.opset >= 20:
            return self.node("Gelu", [x])
        # 0.5 * x * (1 + erf(x / sqrt(2))), as exporters write it before opset 20
        c = self.constant("sqrt2", np.array(np.sqrt(2.0), np.float32))
        erf = self.node("Erf", [self.node("Div", [x, c])])
        one = self.constant("one", np.array(1.0, np.float32))
        half = self.constant("half", np.array(0.5, np.float32))
        return self.node("Mul", [self.node("Mul", [x, self.node("Add", [erf, one])]), half])

    # ---- model --------------------------------------------------------------------------------
    def build(self, output: str, shape, output_dtype="float32") -> onnx.ModelProto:
        self.output(output, shape, output_dtype)
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="tvm_cosa.models")
        model.ir_version = _IR_VERSION[self.opset]
        onnx.checker.check_model(model, full_check=True)  # also runs strict shape inference
        return model


def positive_int(value, name, source):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}", source=source,
                         field=name)
    return value
