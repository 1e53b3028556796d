"""The example ONNX models: valid, deterministic, the right layers, exporter-style features, and
importable into TVM for every opset from 11 to 21."""

from collections import Counter

import numpy as np
import onnx
import pytest

from tvm_cosa import InputError
from tvm_cosa.models import (MODELS, bert_encoder, input_feed, int8_mlp, mobilenet_v2, resnet18,
                             resnet50, tiny_cnn)
from tvm_cosa.relax.frontend import run_onnxruntime

OPSETS = list(range(11, 22))


def conv_groups(model):
    """[(group, kernel size, stride)] of every Conv node."""
    out = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            out.append((attrs["group"], attrs["kernel_shape"][0], attrs["strides"][0]))
    return out


def test_resnet18_and_resnet50_have_torchvision_layers():
    r18, r50 = resnet18(), resnet50()
    ops18, ops50 = Counter(n.op_type for n in r18.graph.node), Counter(
        n.op_type for n in r50.graph.node)
    assert ops18["Conv"] == 20 and ops18["Gemm"] == 1 and ops18["MaxPool"] == 1
    assert ops50["Conv"] == 53 and ops50["Gemm"] == 1
    assert ops18["Flatten"] == 1 and ops18["GlobalAveragePool"] == 1
    assert conv_groups(r18)[0] == (1, 7, 2)  # the 7x7/2 stem
    assert sum(k == 3 for _, k, _ in conv_groups(r50)) == 16  # one 3x3 per bottleneck
    out = run_onnxruntime(r18, input_feed(r18))[0]
    assert out.shape == (1, 1000) and np.isfinite(out).all() and out.std() > 0.1


def test_mobilenet_v2_uses_depthwise_convolutions_and_relu6():
    model = mobilenet_v2()
    groups = conv_groups(model)
    depthwise = [g for g, k, _ in groups if g > 1]
    assert len(groups) == 52 and len(depthwise) == 17
    assert all(k == 3 for g, k, _ in groups if g > 1)
    clips = [n for n in model.graph.node if n.op_type == "Clip"]
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    # ReLU6 as exporters write it: Clip with its bounds as Constant node inputs
    assert clips and all(c.input[1] in constants and c.input[2] in constants for c in clips)


def test_bert_encoder_matmuls():
    model = bert_encoder(layers=1)
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 8  # Q, K, V, scores, context, output, FFN up, FFN down
    out = run_onnxruntime(model, input_feed(model))[0]
    assert out.shape == (1, 128, 768) and np.isfinite(out).all()


def test_models_are_deterministic_and_seeded():
    a, b, c = tiny_cnn(seed=3), tiny_cnn(seed=3), tiny_cnn(seed=4)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()


@pytest.mark.parametrize("opset", OPSETS)
def test_every_opset_from_11_to_21_runs_in_onnxruntime_and_imports_into_tvm(opset):
    pytest.importorskip("tvm")
    from tvm_cosa.relax.extract import extract
    from tvm_cosa.relax.frontend import import_onnx

    for model in (tiny_cnn(opset=opset, reshape_flatten=opset % 2 == 1),
                  bert_encoder(seq_len=4, hidden=16, heads=2, layers=1, opset=opset)):
        assert model.opset_import[0].version == opset
        onnx.checker.check_model(model, full_check=True)
        assert np.isfinite(run_onnxruntime(model, input_feed(model))[0]).all()
        ops = extract(import_onnx(model))
        assert ops and all(op.supported for op in ops)


def test_opset_dependent_forms_are_used():
    old, new = bert_encoder(hidden=16, heads=2, seq_len=4, layers=1, opset=11), bert_encoder(
        hidden=16, heads=2, seq_len=4, layers=1, opset=21)
    old_ops, new_ops = {n.op_type for n in old.graph.node}, {n.op_type for n in new.graph.node}
    assert "LayerNormalization" in new_ops and "Gelu" in new_ops
    assert "LayerNormalization" not in old_ops and "Erf" in old_ops and "ReduceMean" in old_ops


def test_int8_model_uses_matmul_integer():
    model = int8_mlp()
    assert {n.op_type for n in model.graph.node} >= {"MatMulInteger"}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT8


@pytest.mark.parametrize("builder, kwargs, field", [
    (resnet18, {"batch": 0}, "batch"),
    (resnet50, {"image_size": -3}, "image_size"),
    (bert_encoder, {"hidden": 30, "heads": 4}, "heads"),
    (tiny_cnn, {"opset": 9}, "opset"),
    (mobilenet_v2, {"num_classes": 2.5}, "num_classes"),
])
def test_bad_model_arguments_name_the_field(builder, kwargs, field):
    with pytest.raises(InputError, match=field):
        builder(**kwargs)


def test_registry_names_every_builder():
    assert set(MODELS) == {"resnet18", "resnet50", "mobilenet_v2", "bert_encoder", "tiny_cnn",
                           "int8_mlp"}
