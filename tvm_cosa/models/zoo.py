"""The light model zoo that ships inside the `onnx` wheel, with seeded random weights.

`onnx/backend/test/data/light/` holds nine classic third-party graphs (Caffe2 exports, opset 9):
AlexNet, DenseNet-121, Inception v1 / v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512.
To stay small, their weights are `ConstantOfShape` nodes filling every tensor with 0.02, which
makes every output the same and hides any error. `light_model(name)` replaces each of them with
an initializer of seeded random values scaled for the tensor's role, so that activations keep a
unit scale through the whole network and a relative comparison with onnxruntime means something:

- convolution / Gemm / MatMul weights: He normal (std sqrt(2 / fan_in)), fan_in from the
  consumer (input channels per group x kernel window; Gemm's transB);
- BatchNormalization scale and variance: uniform in [0.5, 1.5] (variance stays positive),
  its bias and mean: normal with std 0.1; a scale reaching Mul (DenseNet's, through Unsqueeze)
  like a BN scale, a tensor reaching Add like a bias;
- biases and anything else: normal with std 0.1.

Nothing is downloaded; the graph (names, attributes, opset, shapes) is otherwise unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

LIGHT_ZOO = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
             "shufflenet", "squeezenet", "vgg19", "zfnet512")

# tensors that only pass a value along (DenseNet feeds its BN scale through Unsqueeze to Mul)
_PASS_THROUGH = {"Unsqueeze", "Reshape", "Identity", "Cast", "Flatten", "Squeeze"}


def light_zoo_dir() -> Path:
    import onnx

    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def light_model_path(name: str) -> Path:
    name = name.removeprefix("light_").removesuffix(".onnx")
    if name not in LIGHT_ZOO:
        raise InputError(f"unknown light-zoo model; choose one of {', '.join(LIGHT_ZOO)}",
                         field="name", source=name)
    path = light_zoo_dir() / f"light_{name}.onnx"
    if not path.is_file():
        raise InputError(f"the installed onnx wheel has no {path.name} (expected in "
                         f"{path.parent}); install onnx>=1.14", source=name)
    return path


def light_model(name: str, seed: int = 0):
    """The light-zoo graph `name` (one of LIGHT_ZOO) as an onnx.ModelProto with its
    ConstantOfShape weights replaced by seeded random initializers (see the module text)."""
    import onnx

    return randomize_constant_weights(onnx.load(str(light_model_path(name))), seed)


def randomize_constant_weights(model, seed: int = 0):
    """A copy of `model` whose ConstantOfShape nodes with a constant shape become initializers
    of seeded random values scaled by the role of the tensor (its consumers)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))

    rng = np.random.default_rng(seed)
    kept, replaced = [], set()
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = [int(d) for d in numpy_helper.to_array(inits[node.input[0]])]
        value = _random_value(shape, _role(node.output[0], consumers), rng)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        replaced.add(node.input[0])
    del graph.node[:]
    graph.node.extend(kept)
    # the shape tensors are no longer used by anything
    still_used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name in replaced and t.name not in still_used]
    for t in unused:
        graph.initializer.remove(t)
    for value in [v for v in graph.input if v.name in {t.name for t in unused}]:
        graph.input.remove(value)
    return model


def _role(name: str, consumers: dict) -> tuple:
    """(kind, fan_in) of the tensor `name` from the first consumer that says what it is."""
    for node, index in consumers.get(name, []):
        op = node.op_type
        if op in _PASS_THROUGH:
            found = _role(node.output[0], consumers)
            if found[0] != "other":
                return found
            continue
        attrs = {a.name: a for a in node.attribute}
        if op == "Conv" and index == 1:
            return ("weight", None, None)  # K x C/groups x R x S: fan_in = C/groups x R x S
        if op == "Gemm" and index in (0, 1):
            trans = attrs.get("transB" if index == 1 else "transA")
            return ("weight_gemm", bool(trans.i) if trans else False, index)
        if op == "MatMul" and index == 1:
            return ("weight_matmul", None, None)
        if op == "BatchNormalization":
            return ("positive" if index in (1, 4) else "bias", None, None)
        if op == "Mul":
            return ("positive", None, None)
    return ("other", None, None)


def _random_value(shape, role, rng) -> np.ndarray:
    kind, flag, extra = role
    size = int(np.prod(shape)) if shape else 1
    if kind == "weight" and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
    elif kind == "weight_gemm" and len(shape) == 2:
        # B is K x N, or N x K with transB (A alike with transA, its reduction last / first)
        k_axis = (1 if flag else 0) if extra == 1 else (0 if flag else 1)
        fan_in = shape[k_axis]
    elif kind == "weight_matmul" and len(shape) >= 2:
        fan_in = shape[-2]
    elif kind == "positive":
        return rng.uniform(0.5, 1.5, size).reshape(shape).astype(np.float32)
    else:
        return (0.1 * rng.standard_normal(size)).reshape(shape).astype(np.float32)
    std = np.sqrt(2.0 / max(fan_in, 1))
    return (std * rng.standard_normal(size)).reshape(shape).astype(np.float32)
