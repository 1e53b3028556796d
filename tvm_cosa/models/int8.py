"""Integer-only ONNX models (int8 weights and activations, int32 accumulation), built in code.

    from tvm_cosa.models import resnet18_int8
    model = resnet18_int8()                              # float32 1x3x224x224 in, int32 logits out
    tiny = resnet18_int8(image_size=32, width=16)        # the same graph, small enough for tests

The graph is what an integer accelerator runs, written with operators onnxruntime and TVM compute
bit-identically:
- the float input is quantized once: QuantizeLinear (power-of-two scale) -> int8;
- every convolution: ConvInteger(x int8, w int8) -> int32, Add of an int32 bias, Relu on int32
  (when the layer has one), then requantization Cast(float) -> QuantizeLinear -> int8;
- residual adds: Cast both int8 operands to int32, Add, Relu, requantize;
- max pooling on int8; global average pooling as ReduceSum in int32 and a requantization by
  (H * W * scale); the classifier MatMulInteger -> int32 plus an int32 bias (the output).
ResNet-50, MobileNetV2 and a BERT-shaped encoder follow the same rules (see each builder).

Scales are powers of two chosen by calibration: the builder runs the integer graph in numpy on a
seeded standard-normal input of the model's own shape as it adds the nodes, and gives each
requantization the smallest power-of-two scale with which no value of that input saturates, so
activations use between half and all of the int8 range (about 1 s for ResNet-18 at 224).
Weights are seeded random int8 (normal, clipped to +-127); biases random int32 with a quarter of
the accumulator's spread.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from ..errors import InputError
from .bert import check_encoder_shape
from .builder import OnnxBuilder, positive_int

INT8_MIN_OPSET = 14  # Relu on int32 (Relu-14); ReduceSum takes its axes as an input from 13
WEIGHT_STD = 42.0  # int8 weights: normal with this spread, clipped to +-127


class Int8Builder(OnnxBuilder):
    """OnnxBuilder for integer graphs, computing every tensor in numpy on a calibration input
    as it adds the nodes (`self.value[name]`), so each requantization gets a calibrated scale."""

    def __init__(self, name, *, opset=17, seed=0):
        if isinstance(opset, int) and not isinstance(opset, bool) and opset < INT8_MIN_OPSET:
            raise InputError(f"integer models need opset {INT8_MIN_OPSET} or newer (Relu on "
                             f"int32), got {opset}", source=name, field="opset")
        super().__init__(name, opset=opset, seed=seed)
        self.value: dict[str, np.ndarray] = {}

    # ---- quantization -----------------------------------------------------------------------
    def _scalar(self, hint, value, dtype):
        return self.initializer(hint, np.array(value, dtype=dtype))

    def quantize(self, x, calibration, hint="quant", divisor=1):
        """QuantizeLinear(x float, divisor * 2^k) -> int8, k the smallest with no saturation."""
        peak = float(np.abs(calibration).max()) / divisor
        shift = math.ceil(math.log2(peak / 127)) if peak > 0 else 0
        scale = np.float32(divisor * 2.0 ** shift)
        y = self.node("QuantizeLinear", [x, self._scalar(hint + ".scale", scale, np.float32),
                                         self._scalar(hint + ".zero_point", 0, np.int8)], hint)
        self.value[y] = quantize_int8(calibration, scale)
        return y

    def requantize(self, acc, hint):
        """int32 -> Cast(float) -> QuantizeLinear -> int8."""
        f = self.node("Cast", [acc], hint + ".float", to=TensorProto.FLOAT)
        return self.quantize(f, self.value[acc].astype(np.float32), hint)

    # ---- integer layers ---------------------------------------------------------------------
    def conv_integer(self, x, cin, cout, k, *, stride=1, pad=None, groups=1, relu=True,
                     hint="conv"):
        """ConvInteger + int32 bias (+ Relu) requantized to int8."""
        pad = (k - 1) // 2 if pad is None else pad
        w = int8_weights(self.rng, (cout, cin // groups, k, k))
        acc = self.node("ConvInteger", [x, self.initializer(hint + ".weight", w)],
                        hint + ".acc", kernel_shape=[k, k], strides=[stride, stride],
                        pads=[pad] * 4, group=groups)
        acc_value = conv_int(self.value[x], w, stride, pad, groups)
        bias = self._bias(acc_value, axis=1)
        acc = self.node("Add", [acc, self.initializer(hint + ".bias", bias.reshape(1, -1, 1, 1))],
                        hint + ".biased")
        self.value[acc] = acc_value + bias.reshape(1, -1, 1, 1)
        if relu:
            acc = self.relu_int(acc)
        return self.requantize(acc, hint)

    def _bias(self, acc_value, axis):
        """int32 bias per output channel with a quarter of the accumulator's spread."""
        spread = float(acc_value.std()) if acc_value.size else 1.0
        count = acc_value.shape[axis]
        return np.rint(self.rng.standard_normal(count) * spread / 4).astype(np.int32)

    def relu_int(self, x):
        y = self.node("Relu", [x])
        self.value[y] = np.maximum(self.value[x], 0)
        return y

    def to_int32(self, x):
        y = self.node("Cast", [x], "int32", to=TensorProto.INT32)
        self.value[y] = self.value[x].astype(np.int32)
        return y

    def add_int(self, a, b, *, relu=True, hint="residual"):
        """Residual add of two int8 tensors: in int32 (+ Relu), requantized to int8."""
        y = self.node("Add", [self.to_int32(a), self.to_int32(b)], hint)
        self.value[y] = self.value[a].astype(np.int32) + self.value[b]
        return self.requantize(self.relu_int(y) if relu else y, hint)

    def maxpool_int8(self, x, k=3, stride=2, pad=1):
        y = self.maxpool(x, k, stride, pad)
        self.value[y] = maxpool_int8(self.value[x], k, stride, pad)
        return y

    def global_avgpool_int8(self, x, hint="avgpool"):
        """ReduceSum over H, W in int32, requantized by (H * W * scale): the average, to int8."""
        x32 = self.to_int32(x)
        axes = self.constant("axes", np.array([2, 3], np.int64))
        total = self.node("ReduceSum", [x32, axes], hint + ".sum", keepdims=0)
        self.value[total] = self.value[x32].sum(axis=(2, 3))
        f = self.node("Cast", [total], hint + ".float", to=TensorProto.FLOAT)
        spatial = self.value[x].shape[2] * self.value[x].shape[3]
        return self.quantize(f, self.value[total].astype(np.float32), hint, divisor=spatial)

    def matmul_integer(self, x, cin, cout, hint="fc"):
        """MatMulInteger(x int8, W int8) + int32 bias -> int32."""
        w = int8_weights(self.rng, (cin, cout))
        acc = self.node("MatMulInteger", [x, self.initializer(hint + ".weight", w)], hint + ".acc")
        acc_value = matmul_int(self.value[x], w)
        bias = self._bias(acc_value, axis=acc_value.ndim - 1)
        y = self.node("Add", [acc, self.initializer(hint + ".bias", bias)], hint)
        self.value[y] = (acc_value + bias).astype(np.int32)
        return y

    def linear_int8(self, x, cin, cout, *, relu=False, hint="linear"):
        """MatMulInteger + int32 bias (+ Relu) requantized to int8."""
        acc = self.matmul_integer(x, cin, cout, hint)
        return self.requantize(self.relu_int(acc) if relu else acc, hint)

    def matmul_activations(self, a, b, *, relu=False, hint="matmul"):
        """MatMulInteger of two int8 activations (+ Relu), requantized to int8."""
        acc = self.node("MatMulInteger", [a, b], hint + ".acc")
        self.value[acc] = matmul_int(self.value[a], self.value[b]).astype(np.int32)
        return self.requantize(self.relu_int(acc) if relu else acc, hint)

    def reshape_int8(self, x, shape):
        y = self.reshape(x, shape)
        self.value[y] = self.value[x].reshape(shape)
        return y

    def transpose_int8(self, x, perm):
        y = self.transpose(x, perm)
        self.value[y] = self.value[x].transpose(perm)
        return y


# ---- numpy semantics of the graph (calibration) --------------------------------------------------
def int8_weights(rng, shape) -> np.ndarray:
    return np.clip(np.rint(rng.standard_normal(shape) * WEIGHT_STD), -127, 127).astype(np.int8)


def quantize_int8(x, scale) -> np.ndarray:
    """QuantizeLinear as ONNX defines it: x / scale in float32, rounded half to even, saturated."""
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale))
    return np.clip(q, -128, 127).astype(np.int8)


def conv_int(x, w, stride, pad, groups=1) -> np.ndarray:
    """Integer NCHW convolution, exact (float64 products and sums of 8-bit values)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    r, s = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (r, s), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # N, C, P, Q, R, S
    cg, kg = w.shape[1], w.shape[0] // groups
    if groups == w.shape[0] and cg == 1:  # depthwise: one product per channel and window
        out = np.einsum("ncpqrs,crs->ncpq", windows, w[:, 0].astype(np.float64))
        return np.rint(out).astype(np.int64)
    outs = [np.tensordot(windows[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg]
                         .astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))
            for g in range(groups)]
    return np.rint(np.concatenate(outs, axis=3).transpose(0, 3, 1, 2)).astype(np.int64)


def matmul_int(a, b) -> np.ndarray:
    """Integer matmul, exact: float64 BLAS on 8-bit values (sums far below 2^53)."""
    return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)


def maxpool_int8(x, k, stride, pad) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-128)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].max(axis=(4, 5))


# ---- models --------------------------------------------------------------------------------------
def _basic_block(b: Int8Builder, x, cin, mid, stride, name):
    y = b.conv_integer(x, cin, mid, 3, stride=stride, hint=name + ".conv1")
    y = b.conv_integer(y, mid, mid, 3, relu=False, hint=name + ".conv2")
    return _shortcut_add(b, x, y, cin, mid, stride, name), mid


def _bottleneck(b: Int8Builder, x, cin, mid, stride, name):
    y = b.conv_integer(x, cin, mid, 1, hint=name + ".conv1")
    y = b.conv_integer(y, mid, mid, 3, stride=stride, hint=name + ".conv2")
    y = b.conv_integer(y, mid, 4 * mid, 1, relu=False, hint=name + ".conv3")
    return _shortcut_add(b, x, y, cin, 4 * mid, stride, name), 4 * mid


def _shortcut_add(b, x, y, cin, cout, stride, name):
    if stride != 1 or cin != cout:
        x = b.conv_integer(x, cin, cout, 1, stride=stride, pad=0, relu=False,
                           hint=name + ".downsample")
    return b.add_int(y, x, hint=name + ".add")


def _resnet_int8(name, blocks, block, *, batch, image_size, width, num_classes, opset, seed):
    for field, value in (("batch", batch), ("image_size", image_size), ("width", width),
                         ("num_classes", num_classes)):
        positive_int(value, field, name)
    b = Int8Builder(name, opset=opset, seed=seed)
    x = _quantized_input(b, (batch, 3, image_size, image_size), seed)
    x = b.conv_integer(x, 3, width, 7, stride=2, pad=3, hint="conv1")
    x = b.maxpool_int8(x, 3, 2, 1)
    cin = width
    for stage, count in enumerate(blocks):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            x, cin = block(b, x, cin, width * 2 ** stage, stride, f"layer{stage + 1}.{i}")
    x = b.global_avgpool_int8(x)
    return b.build(b.matmul_integer(x, cin, num_classes), (batch, num_classes),
                   output_dtype="int32")


def _quantized_input(b: Int8Builder, shape, seed, name="input"):
    """The float input, and its quantization calibrated on a seeded standard-normal sample."""
    x = b.input(name, shape)
    sample = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    return b.quantize(x, sample, "input.quant")


def resnet18_int8(batch=1, *, image_size=224, width=64, num_classes=1000, opset=17, seed=0):
    """ResNet-18 in integers: 20 ConvInteger layers (torchvision's shapes) and a MatMulInteger
    classifier; float32 input (batch, 3, image_size, image_size), int32 logits out."""
    return _resnet_int8("resnet18_int8", (2, 2, 2, 2), _basic_block, batch=batch,
                        image_size=image_size, width=width, num_classes=num_classes,
                        opset=opset, seed=seed)


def resnet50_int8(batch=1, *, image_size=224, width=64, num_classes=1000, opset=17, seed=0):
    """ResNet-50 in integers: 53 ConvInteger layers (bottlenecks 3, 4, 6, 3) and a
    MatMulInteger classifier."""
    return _resnet_int8("resnet50_int8", (3, 4, 6, 3), _bottleneck, batch=batch,
                        image_size=image_size, width=width, num_classes=num_classes,
                        opset=opset, seed=seed)


def mobilenet_v2_int8(batch=1, *, image_size=224, width_mult=1.0, num_classes=1000, opset=17,
                      seed=0, blocks=None):
    """MobileNetV2 in integers: 1x1 expand, 3x3 depthwise and 1x1 project ConvInteger layers
    (Relu where the float model has ReLU6: the int8 saturation is the cap), requantized
    residual adds without Relu. `blocks` limits the (t, c, n, s) stages for small models."""
    from .cnn import _MOBILENET_V2, _make_divisible

    for field, value in (("batch", batch), ("image_size", image_size),
                         ("num_classes", num_classes)):
        positive_int(value, field, "mobilenet_v2_int8")
    b = Int8Builder("mobilenet_v2_int8", opset=opset, seed=seed)
    x = _quantized_input(b, (batch, 3, image_size, image_size), seed)
    cin = _make_divisible(32 * width_mult)
    x = b.conv_integer(x, 3, cin, 3, stride=2, hint="features.0")
    for stage, (t, c, n, s) in enumerate(_MOBILENET_V2 if blocks is None
                                         else _MOBILENET_V2[:blocks]):
        cout = _make_divisible(c * width_mult)
        for i in range(n):
            x = _inverted_residual(b, x, cin, cout, s if i == 0 else 1, t,
                                   f"features.{stage + 1}.{i}")
            cin = cout
    last = _make_divisible(1280 * max(1.0, width_mult))
    x = b.conv_integer(x, cin, last, 1, hint="features.last")
    x = b.global_avgpool_int8(x)
    return b.build(b.matmul_integer(x, last, num_classes, hint="classifier"),
                   (batch, num_classes), output_dtype="int32")


def _inverted_residual(b: Int8Builder, x, cin, cout, stride, t, name):
    hidden = cin * t
    y = b.conv_integer(x, cin, hidden, 1, hint=name + ".expand") if t != 1 else x
    y = b.conv_integer(y, hidden, hidden, 3, stride=stride, groups=hidden, hint=name + ".dw")
    y = b.conv_integer(y, hidden, cout, 1, relu=False, hint=name + ".project")
    return b.add_int(y, x, relu=False, hint=name + ".add") if stride == 1 and cin == cout else y


def bert_encoder_int8(batch=1, *, seq_len=128, hidden=768, heads=12, layers=2,
                      intermediate=None, opset=17, seed=0):
    """A BERT-shaped encoder in integers: per layer the Q, K, V and output projections and the
    feed-forward network as MatMulInteger (int8 activations x int8 weights), the attention
    scores Q.K^T and the context P.V as MatMulInteger of two activations (batched over heads).
    Softmax, GELU and LayerNorm have no integer ONNX form that onnxruntime and TVM round alike:
    the attention is ReLU attention (scores through Relu, requantized), the FFN uses Relu, and
    there is no normalization; residual adds are requantized. Float32 input (batch, seq_len,
    hidden), int8 output."""
    check_encoder_shape("bert_encoder_int8", batch, seq_len, hidden, heads, layers)
    ffn = intermediate or 4 * hidden
    b = Int8Builder("bert_encoder_int8", opset=opset, seed=seed)
    x = _quantized_input(b, (batch, seq_len, hidden), seed, name="hidden_states")
    for i in range(layers):
        x = _encoder_layer(b, x, batch, seq_len, hidden, heads, ffn, f"layer.{i}")
    return b.build(x, (batch, seq_len, hidden), output_dtype="int8")


def _encoder_layer(b: Int8Builder, x, batch, seq, hidden, heads, ffn, name):
    d = hidden // heads

    def split_heads(t):  # (B, S, H) -> (B, heads, S, d)
        return b.transpose_int8(b.reshape_int8(t, (batch, seq, heads, d)), (0, 2, 1, 3))

    q = split_heads(b.linear_int8(x, hidden, hidden, hint=name + ".query"))
    k = split_heads(b.linear_int8(x, hidden, hidden, hint=name + ".key"))
    v = split_heads(b.linear_int8(x, hidden, hidden, hint=name + ".value"))
    scores = b.matmul_activations(q, b.transpose_int8(k, (0, 1, 3, 2)), relu=True,
                                  hint=name + ".scores")
    context = b.matmul_activations(scores, v, hint=name + ".context")
    context = b.reshape_int8(b.transpose_int8(context, (0, 2, 1, 3)), (batch, seq, hidden))
    attn = b.linear_int8(context, hidden, hidden, hint=name + ".attention.output")
    x = b.add_int(attn, x, hint=name + ".attention.add")
    y = b.linear_int8(x, hidden, ffn, relu=True, hint=name + ".intermediate")
    y = b.linear_int8(y, ffn, hidden, hint=name + ".output")
    return b.add_int(y, x, hint=name + ".output.add")


def activation_names(model) -> list[str]:
    """Every int8 activation of an integer model (the outputs of its QuantizeLinear nodes)."""
    return [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
