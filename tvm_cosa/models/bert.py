"""A BERT encoder as an ONNX model: the matmuls of self-attention and the feed-forward network.

Per layer: Q, K, V projections (3-D x 2-D MatMul: the batch folds into rows), scores Q.K^T and
context P.V (4-D batched MatMul over heads), output projection, two feed-forward MatMuls with
GELU, residual adds and LayerNormalization, as PyTorch's exporter writes them.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .builder import OnnxBuilder, positive_int


def bert_encoder(batch=1, *, seq_len=128, hidden=768, heads=12, layers=2, intermediate=None,
                 opset=17, seed=0):
    """BERT-base shaped encoder layers (hidden 768, 12 heads, FFN 3072) on a float embedding
    input of shape (batch, seq_len, hidden)."""
    check_encoder_shape("bert_encoder", batch, seq_len, hidden, heads, layers)
    intermediate = intermediate or 4 * hidden
    b = OnnxBuilder("bert_encoder", opset=opset, seed=seed)
    x = b.input("hidden_states", (batch, seq_len, hidden))
    for i in range(layers):
        x = _layer(b, x, batch, seq_len, hidden, heads, intermediate, f"layer.{i}")
    return b.build(x, (batch, seq_len, hidden))


def check_encoder_shape(builder, batch, seq_len, hidden, heads, layers):
    """The argument checks every encoder builder shares; errors name the builder."""
    for field, value in (("batch", batch), ("seq_len", seq_len), ("hidden", hidden),
                         ("heads", heads), ("layers", layers)):
        positive_int(value, field, builder)
    if hidden % heads:
        raise InputError(f"hidden ({hidden}) must be a multiple of heads ({heads})",
                         source=builder, field="heads")


def _layer(b, x, batch, seq, hidden, heads, ffn, name):
    d = hidden // heads

    def split_heads(t):  # (B, S, H) -> (B, heads, S, d)
        return b.transpose(b.reshape(t, (batch, seq, heads, d)), (0, 2, 1, 3))

    q = split_heads(b.matmul_linear(x, hidden, hidden, name + ".query"))
    k = split_heads(b.matmul_linear(x, hidden, hidden, name + ".key"))
    v = split_heads(b.matmul_linear(x, hidden, hidden, name + ".value"))
    scores = b.node("MatMul", [q, b.transpose(k, (0, 1, 3, 2))], name + ".scores")
    scale = b.constant("scale", np.array(1.0 / np.sqrt(d), np.float32))
    probs = b.node("Softmax", [b.node("Mul", [scores, scale])], axis=-1)
    context = b.node("MatMul", [probs, v], name + ".context")
    context = b.reshape(b.transpose(context, (0, 2, 1, 3)), (batch, seq, hidden))
    attn = b.matmul_linear(context, hidden, hidden, name + ".attention.output")
    x = b.layernorm(b.add(attn, x), hidden, name + ".attention.ln")
    y = b.gelu(b.matmul_linear(x, hidden, ffn, name + ".intermediate"))
    y = b.matmul_linear(y, ffn, hidden, name + ".output")
    return b.layernorm(b.add(y, x), hidden, name + ".output.ln")


def int8_mlp(batch=4, *, features=32, hidden=48, classes=16, opset=17, seed=0):
    """Two quantized layers with MatMulInteger (int8 x int8 -> int32), for the int8 path."""
    positive_int(batch, "batch", "int8_mlp")
    b = OnnxBuilder("int8_mlp", opset=opset, seed=seed)
    x = b.input("input", (batch, features), dtype="int8")
    w1 = b.initializer("w1", b.rng.integers(-8, 8, (features, hidden), dtype=np.int8))
    w2 = b.initializer("w2", b.rng.integers(-8, 8, (hidden, classes), dtype=np.int32))
    h = b.node("MatMulInteger", [x, w1], "fc1")
    h = b.node("Relu", [h])
    y = b.node("MatMul", [h, w2], "fc2")  # int32 x int32, as a requantization-free second layer
    return b.build(y, (batch, classes), output_dtype="int32")
