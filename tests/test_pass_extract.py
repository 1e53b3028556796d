"""Extraction: every conv2d / matmul of a Relax module becomes the right Problem; other
multiply-accumulate operators are listed as unsupported with a reason."""

import pytest

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from pass_helpers import conv_module, matmul_module, single_op_module  # noqa: E402
from tvm_cosa import Problem  # noqa: E402
from tvm_cosa.models import bert_encoder, tiny_cnn  # noqa: E402
from tvm_cosa.relax.extract import count_other_ops, extract  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx  # noqa: E402


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv2d_becomes_a_timeloop_cnn_layer(layout):
    # 2 x 6 x 9 x 13 input, 3x3 filter, stride 2, padding 1, dilation 1 -> 5 x 7 output
    (op,) = extract(conv_module(n=2, c=6, k=4, h=9, w=13, kernel=3, stride=2, pad=1, dilation=1,
                                groups=1, layout=layout, dtype="float32"))
    assert op.supported and op.kind == "conv2d" and op.layout == layout
    # Timeloop: P = output width, Q = output height, R = filter width, S = filter height
    assert op.problem == Problem.conv2d(N=2, K=4, C=6, P=7, Q=5, R=3, S=3, stride=2,
                                        name=op.problem.name)
    assert (op.strides, op.padding, op.dilation, op.groups) == ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    # padding folds into the input: the padded 11 x 15 input is exactly what the window covers
    assert op.problem.tensor("Inputs").axis_extents(op.problem.size) == (2, 6, 11, 15)


def test_dilation_and_rectangular_strides_are_kept():
    mod = single_op_module(
        lambda x, w: relax.op.nn.conv2d(x, w, strides=(1, 2), padding=(2, 0, 2, 0),
                                        dilation=(2, 1)),
        ((1, 3, 8, 10), "float32"), ((5, 3, 3, 2), "float32"))
    (op,) = extract(mod)
    p = op.problem.param
    assert (p["Hstride"], p["Wstride"], p["Hdilation"], p["Wdilation"]) == (1, 2, 2, 1)
    assert op.problem.size == {"R": 2, "S": 3, "P": 5, "Q": 8, "C": 3, "K": 5, "N": 1}


def test_grouped_and_depthwise_conv2d_get_a_group_dimension():
    grouped, depthwise = (extract(conv_module(n=1, c=8, k=k, h=6, w=6, kernel=3, stride=1, pad=1,
                                              dilation=1, groups=g, layout="NCHW",
                                              dtype="float32"))[0]
                          for g, k in ((2, 12), (8, 8)))
    assert grouped.problem.size["G"] == 2
    assert (grouped.problem.size["C"], grouped.problem.size["K"]) == (4, 6)
    assert depthwise.problem.size["G"] == 8
    assert (depthwise.problem.size["C"], depthwise.problem.size["K"]) == (1, 1)
    assert depthwise.shape_text() == "3x3/1 8->8 g8 6x6"


@pytest.mark.parametrize("a, b, sizes, mode", [
    ((6, 5), (5, 4), {"M": 6, "N": 4, "K": 5}, "none"),
    ((2, 3, 5), (5, 4), {"M": 6, "N": 4, "K": 5}, "fold"),  # shared weights: batch = more rows
    ((2, 3, 5), (2, 5, 4), {"B": 2, "M": 3, "N": 4, "K": 5}, "batch"),
    ((2, 4, 3, 5), (2, 4, 5, 4), {"B": 8, "M": 3, "N": 4, "K": 5}, "batch"),
])
def test_matmul_shapes(a, b, sizes, mode):
    (op,) = extract(matmul_module(a, b, "float32"))
    assert op.problem.size == sizes and op.batch_mode == mode


def test_int8_operators_keep_their_dtypes():
    (conv,) = extract(conv_module(n=1, c=4, k=4, h=5, w=5, kernel=3, stride=1, pad=1, dilation=1,
                                  groups=1, layout="NHWC", dtype="int8"))
    (mm,) = extract(matmul_module((4, 8), (8, 3), "int8"))
    assert (conv.dtype, conv.out_dtype) == ("int8", "int32") and conv.supported
    assert (mm.dtype, mm.out_dtype) == ("int8", "int32") and mm.supported


def test_unsupported_operators_are_listed_with_a_reason():
    n = tvm.tirx.Var("n", "int64")
    mod = single_op_module(
        lambda x, v, d: relax.Tuple([
            relax.op.nn.conv2d_transpose(x, relax.op.ones((4, 2, 3, 3), "float32")),
            relax.op.nn.conv1d(relax.op.reshape(x, (1, 4, 36)), relax.op.ones((2, 4, 3),
                                                                                "float32")),
            relax.op.matmul(v, relax.op.ones((8, 3), "float32")),
            relax.op.matmul(d, relax.op.ones((8, 3), "float32")),
            relax.op.matmul(relax.op.astype(v, "float64"), relax.op.ones((8, 3), "float64")),
        ]),
        ((1, 4, 6, 6), "float32"), ((8,), "float32"), ((n, 8), "float32"))
    ops = extract(mod)
    reasons = {op.kind: op.reason for op in ops}
    assert all(not op.supported for op in ops) and len(ops) == 5
    assert "conv2d_transpose" in reasons["conv2d_transpose"]
    assert "conv1d" in reasons["conv1d"]
    assert sorted(op.reason.split(" ")[0] for op in ops if op.kind == "matmul") == [
        "dtype", "dynamic", "matmul"]


def test_identical_layers_share_a_key_and_names_do_not_matter():
    model = tiny_cnn()
    ops = extract(import_onnx(model))
    keys = [op.problem.key() for op in ops]
    assert len(keys) == len(set(keys)) == 6  # every tiny_cnn layer is a different shape
    bert = extract(import_onnx(bert_encoder(seq_len=8, hidden=32, heads=2, layers=2)))
    keys = [op.problem.key() for op in bert]
    # per layer: Q, K, V, output projection (same shape), scores, context, two FFN matmuls
    assert len(bert) == 16 and len(set(keys)) == 5
    assert keys[:8] == keys[8:]  # the second layer repeats the first


def test_other_operators_are_counted_not_extracted():
    counts = count_other_ops(import_onnx(tiny_cnn()))
    assert counts["relax.nn.max_pool2d"] == 1 and counts["relax.nn.avg_pool2d"] == 1
    assert "relax.nn.conv2d" not in counts and "relax.matmul" not in counts
