"""Graphs of the kinds users export (NCHW, opsets 9 to 21): Dropout, LRN, Concat, channel shuffle,
grouped convolution, Gemm with transA / transB, Sum of many inputs, names that are not C
identifiers. Each compiles for Gemmini (GemminiPrepare + CoSAPass, the c target on the
functional model) and equals onnxruntime; a graph on which TVM's ConvertLayout fails still
compiles, each convolution converted on its own, and the report says so."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("tvm")
pytest.importorskip("onnxruntime")

from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime, seeded_feed  # noqa: E402
from tvm_cosa.target.gemmini import flow  # noqa: E402

TOLERANCE = 1e-4
OPTIONS = dict(cache=False, jobs=1, check="builtin")
# the IR version each opset came with (onnxruntime reads them all)
IR_VERSION = {9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9,
              20: 9, 21: 10}


class Graph:
    """A tiny onnx.helper graph builder with seeded He-scaled weights."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, hint):
        self.n += 1
        return f"{hint}/{self.n}"  # a '/' as Caffe2 and PyTorch write them: not a C name

    def weight(self, shape, fan_in):
        name = self.name("w")
        value = self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def const(self, array):
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, outputs=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x, cin, cout, k=3, group=1, stride=1):
        w = self.weight((cout, cin // group, k, k), cin // group * k * k)
        b = self.const((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], pads=[k // 2] * 4, group=group,
                       strides=[stride, stride])

    def model(self, x_shape, outputs, opset):
        graph = helper.make_graph(
            self.nodes, "exported", [helper.make_tensor_value_info("input/0", TensorProto.FLOAT,
                                                                   list(x_shape))],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = IR_VERSION[opset]
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        shapes = {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.output]}
        for value in model.graph.output:  # old IR versions want output shapes
            value.type.CopyFrom(shapes[value.name])
        onnx.checker.check_model(model)
        return model


def exported_cnn(opset, channels=16, groups=4):
    """Conv, ReLU, LRN, MaxPool; a grouped conv and a channel shuffle (Reshape, Transpose,
    Reshape); Dropout; two branches concatenated; Sum of three; global pooling, Flatten; a Gemm
    with transB (a Linear) and a Gemm with transA; Softmax."""
    g = Graph()
    x = g.op("Relu", [g.conv("input/0", 3, channels)])
    x = g.op("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    y = g.op("Relu", [g.conv(x, channels, channels, group=groups)])
    y = g.op("Reshape", [y, g.const(np.array([1, groups, channels // groups, 8, 8], np.int64))])
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
    y = g.op("Reshape", [y, g.const(np.array([1, channels, 8, 8], np.int64))])
    y = g.op("Dropout", [y])
    z = g.op("Relu", [g.conv(x, channels, channels, k=1)])
    cat = g.op("Concat", [y, z], axis=1)
    s = g.op("Sum", [g.conv(cat, 2 * channels, channels), x, z])
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [s])], axis=1)
    fc = g.op("Gemm", [pooled, g.weight((32, channels), channels), g.const(
        np.zeros(32, np.float32))], transB=1)
    fc_t = g.op("Transpose", [g.op("Relu", [fc])], perm=[1, 0])  # (32, 1): A for transA
    logits = g.op("Gemm", [fc_t, g.weight((32, 10), 32), g.const(np.full(10, 0.1, np.float32))],
                  transA=1, alpha=0.5)  # C is optional from opset 11 only
    return g.model((1, 3, 16, 16), [g.op("Softmax", [logits], axis=1), logits], opset)


def compile_and_compare(model):
    feed = seeded_feed(model)
    want = run_onnxruntime(model, feed)
    compiled = flow.compile_module(import_onnx(model), "gemmini", **OPTIONS)
    runner = flow.load(compiled.mod, compiled.config)  # the c target: C names must be valid
    got = runner(feed)
    ok, text = flow.compare(got, want, TOLERANCE)
    assert ok, text
    return compiled, runner


@pytest.mark.parametrize("opset", [9, 13, 21])
def test_an_exported_cnn_of_every_kind_compiles_for_gemmini_and_equals_onnxruntime(opset):
    compiled, runner = compile_and_compare(exported_cnn(opset))
    records = compiled.report.records
    assert len(records) == 6 and all(r.status == "scheduled" for r in records)
    # every conv (the grouped one too: 4 channels per group) and both Gemms on the array
    assert [r.lowering for r in records] == ["gemmini"] * 6, flow.placement(compiled.report)
    assert runner.model.counters()["calls"] == 6
    assert not compiled.report.notes  # ConvertLayout took the whole graph


@pytest.mark.parametrize("opset", [10, 11, 12, 14, 15, 16, 17, 18, 19, 20])
def test_every_opset_imports_prepares_and_schedules(opset):
    """The other opsets: the same graph through import, GemminiPrepare and CoSAPass (the run
    itself is the same code as the opsets above)."""
    compiled = flow.compile_module(import_onnx(exported_cnn(opset)), "gemmini", **OPTIONS)
    assert [r.lowering for r in compiled.report.records] == ["gemmini"] * 6


def dropout_mask_graph():
    """Dropout whose mask is used: TVM's ConvertLayout cannot take the tuple it returns."""
    g = Graph()
    c1 = g.conv("input/0", 8, 16)
    d, mask = g.op("Dropout", [c1], outputs=2)
    masked = g.op("Mul", [d, g.op("Cast", [mask], to=TensorProto.FLOAT)])
    return g.model((1, 8, 8, 8), [g.conv(g.op("Relu", [masked]), 16, 16)], 12)


def test_a_graph_convertlayout_cannot_take_compiles_and_the_report_says_why():
    compiled, _ = compile_and_compare(dropout_mask_graph())
    assert [r.lowering for r in compiled.report.records] == ["gemmini", "gemmini"]
    assert [r.layout for r in compiled.report.records] == ["NHWC", "NHWC"]
    (note,) = compiled.report.notes
    assert "ConvertLayout failed" in note and "each convolution was put in NHWC" in note
    assert note in compiled.report.table()


def test_when_no_layout_conversion_works_the_convolutions_keep_theirs(monkeypatch):
    from tvm_cosa.target.gemmini import prepare

    def failing(mod):
        raise RuntimeError("no conversion for this graph")

    monkeypatch.setattr(prepare, "convs_to_nhwc", failing)
    compiled, _ = compile_and_compare(dropout_mask_graph())
    (note,) = compiled.report.notes
    assert "no conversion for this graph" in note and "keep their layout" in note
    assert [r.layout for r in compiled.report.records] == ["NCHW", "NCHW"]
    assert all(r.status == "scheduled" for r in compiled.report.records)


def test_sum_of_many_inputs_becomes_adds():
    from tvm_cosa.target.gemmini.prepare import simplify_exports

    g = Graph()
    terms = [g.conv("input/0", 4, 16, k=1) for _ in range(5)]
    model = g.model((1, 4, 4, 4), [g.op("Sum", terms)], 13)
    imported = import_onnx(model)
    assert "R.stack" in imported.script()  # TVM's importer: a 5-D stack, then a sum
    text = simplify_exports(imported).script()
    assert "R.stack" not in text and "R.sum" not in text
    compile_and_compare(model)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=12), st.sets(st.text(alphabet="ab_/0", max_size=4), max_size=6))
def test_any_model_name_becomes_a_fresh_c_identifier(name, taken):
    from tvm_cosa.relax.names import c_identifier, is_c_identifier

    safe = c_identifier(name, taken)
    assert is_c_identifier(safe) and safe not in taken
    if is_c_identifier(name) and name not in taken:
        assert safe == name  # good names are kept
