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

The graph's logits (the input of its final Softmax) become a second output, so that a saturated
softmax cannot hide an error. Nothing is downloaded; the graph (names, attributes, opset,
shapes) is otherwise unchanged; `image_size` runs the same layers on smaller images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

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


def light_model(name: str, seed: int = 0, image_size: Optional[int] = None):
    """The light-zoo graph `name` (one of LIGHT_ZOO) as an onnx.ModelProto with its
    ConstantOfShape weights replaced by seeded random initializers (see the module text).

    image_size: the same network on smaller images (`with_image_size`), for tests that must
    run every graph in little time; None keeps the exported 224 x 224."""
    import onnx

    model = onnx.load(str(light_model_path(name)))
    if image_size is not None:
        model = with_image_size(model, image_size, source=name)
    return with_logits(randomize_constant_weights(model, seed))


def with_logits(model):
    """The graph with the input of its final Softmax as a second output: random weights can
    saturate the softmax (a one-hot output hides any error), the logits cannot."""
    from onnx import helper

    outputs = {v.name for v in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Softmax" and node.output[0] in outputs \
                and node.input[0] not in outputs:
            model.graph.output.append(helper.make_tensor_value_info(
                node.input[0], model.graph.output[0].type.tensor_type.elem_type, None))
    return model


def with_image_size(model, size: int, *, source="model"):
    """The graph on `size` x `size` input images, every layer kept: the input's spatial
    dimensions changed; Reshapes that flatten to (N, features) take (N, -1); Reshapes that keep
    the spatial dimensions (a channel shuffle's) scale them by size / exported size; a pooling
    whose window covers the whole map (output 1 x 1) becomes the global pooling; the first
    fully connected layer's weight (a ConstantOfShape) gets the new number of features.
    Raises InputError when the exported shapes do not scale exactly (choose a multiple of 32).
    """
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise InputError(f"image_size must be an integer of at least 32, got {size!r}",
                         source=source, field="image_size")
    before = _value_shapes(model)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    (image,) = [v for v in graph.input if v.name not in inits]
    dims = image.type.tensor_type.shape.dim
    exported = dims[-1].dim_value
    dims[-2].dim_value = dims[-1].dim_value = size

    def scaled(n):
        if n * size % exported:
            raise InputError(f"a {n}-pixel map does not scale to {size} / {exported}; choose "
                             f"a multiple of 32", source=source, field="image_size")
        return n * size // exported

    for i, node in enumerate(graph.node):
        shape_in = before.get(node.input[0]) if node.input else None
        if node.op_type == "Reshape" and node.input[1] in inits and shape_in:
            target = [int(v) for v in numpy_helper.to_array(inits[node.input[1]])]
            if len(target) == 2 and target[1] == int(np.prod(shape_in[1:])):
                target = [target[0], -1]
            elif len(target) >= 4 and target[-2:] == list(shape_in[-2:]):
                target = target[:-2] + [scaled(target[-2]), scaled(target[-1])]
            else:
                continue
            name = f"{node.input[1]}__resized_{i}"
            graph.initializer.append(numpy_helper.from_array(np.array(target, np.int64), name))
            if model.ir_version < 4:  # IR 3: every initializer is also a graph input
                graph.input.append(helper.make_tensor_value_info(
                    name, onnx.TensorProto.INT64, [len(target)]))
            node.input[1] = name
        elif node.op_type in ("AveragePool", "MaxPool") and shape_in \
                and list(before.get(node.output[0], [])[-2:]) == [1, 1]:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            covers = all(k >= n for k, n in zip(attrs["kernel_shape"], shape_in[-2:]))
            # padding is left out of the average (count_include_pad=0): the global average
            if covers and not attrs.get("count_include_pad", 0):
                graph.node[i].CopyFrom(helper.make_node(
                    "Global" + node.op_type, [node.input[0]], list(node.output), name=node.name))
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    after = _value_shapes(model)
    # weights whose reduction size followed the features (the first Linear after a flatten)
    for node in graph.node:
        if node.op_type != "Gemm":
            continue
        features = after[node.input[0]][-1]
        trans = [a.i for a in node.attribute if a.name == "transB"]
        weight = next((n for n in graph.node if n.op_type == "ConstantOfShape"
                       and n.output[0] == node.input[1]), None)
        if weight is None or weight.input[0] not in inits:
            continue
        shape = [int(v) for v in numpy_helper.to_array(inits[weight.input[0]])]
        shape[1 if trans and trans[0] else 0] = features
        inits[weight.input[0]].CopyFrom(numpy_helper.from_array(np.array(shape, np.int64),
                                                                 weight.input[0]))
    model = shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def _value_shapes(model) -> dict:
    """Static shape of every value of the graph (onnx shape inference)."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, strict_mode=True).graph
    shapes = {}
    for value in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value for d in dims]
    return shapes


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
