"""Example ONNX models built in code with seeded random weights (nothing is downloaded).

    from tvm_cosa.models import resnet18
    model = resnet18()                          # onnx.ModelProto, 1x3x224x224 input
    tiny = resnet18(image_size=32, width=8)     # the same graph, small enough for tests

`MODELS` maps names to builders for the command line and the benchmarks.
"""

from .bert import bert_encoder, int8_mlp
from .cnn import mobilenet_v2, resnet18, resnet50, tiny_cnn
from .int8 import bert_encoder_int8, mobilenet_v2_int8, resnet18_int8, resnet50_int8

MODELS = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "bert_encoder": bert_encoder,
    "tiny_cnn": tiny_cnn,
    "int8_mlp": int8_mlp,
}


def input_feed(model, seed: int = 0) -> dict:
    """Seeded random inputs for every graph input of `model` (name -> numpy array)."""
    import numpy as np
    from onnx import helper

    rng = np.random.default_rng(seed)
    feed = {}
    init = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in init:
            continue
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if np.issubdtype(dtype, np.integer):
            feed[value.name] = rng.integers(-8, 8, shape).astype(dtype)
        else:
            feed[value.name] = rng.standard_normal(shape).astype(dtype)
    return feed


__all__ = ["MODELS", "bert_encoder", "bert_encoder_int8", "input_feed", "int8_mlp", "mobilenet_v2",
           "mobilenet_v2_int8", "resnet18", "resnet18_int8", "resnet50", "resnet50_int8",
           "tiny_cnn"]
