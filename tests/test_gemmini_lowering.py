"""Lowering single conv2d / matmul PrimFuncs onto the Gemmini ISA, built with the c target against
the functional model, compared with numpy (int8 exactly, float32 to 1e-5)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from gemmini_util import (conv_module, conv_ref, lower_module, matmul_module,
                          random_gemmini_mapping, random_operands, run, the_op)
from tvm_cosa import LevelMapping as L, Mapping, assert_valid, check_mapping
from tvm_cosa.target.gemmini.config import GemminiConfig
from tvm_cosa.target.gemmini.loops import loop_instructions
from tvm_cosa.target.gemmini.plan import UnsupportedMapping, make_plan, pad_channels

tvm = pytest.importorskip("tvm")
CFG = GemminiConfig()
ARCH = CFG.architecture()
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_matmul_int8_exact_with_counts(tmp_path):
    mod = matmul_module((32, 48), (48, 40))
    # 32 rows stream with each 16x8 weight block; K in 3 blocks, N in 5 chunks of 8 columns
    mapping = Mapping([L(temporal={"M": 32}),
                       L(temporal={"N": 5, "K": 3}, order=("N", "K"), spatial_x={"K": 16},
                         spatial_y={"N": 8}), L(), L()])
    a, b = random_operands(np.random.default_rng(0), [(32, 48), (48, 40)], "int8")
    a[0] = -128
    b[:, 0] = -128
    with loop_instructions(False):  # command by command (loop_ws: test_gemmini_loops.py)
        lowered = lower_module(mod, mapping, ARCH)
    out, c = run(lowered, CFG, [a, b], tmp_path)
    np.testing.assert_array_equal(out, a.astype(np.int32) @ b.astype(np.int32))
    assert out[0, 0] == 48 * 128 * 128
    assert c["bytes_in"] == 32 * 48 + 48 * 40 and c["bytes_out"] == 32 * 40 * 4
    assert c["macs"] == 32 * 48 * 40
    # per weight block (3 x 5): one preloaded compute, then the second row block reuses it
    assert (c["compute_preloaded"], c["compute_accumulated"], c["preload"]) == (15, 15, 30)
    assert c["mvin"] == 3 * 2 + 5 * 3 and c["mvout"] == 5 * 2 and c["mvin_acc"] == 0
    assert c["fence"] == 1 and c["config_ex"] == 1


conv_cases = st.fixed_dictionaries({
    "n": st.sampled_from([1, 1, 2]), "c": st.sampled_from([3, 8, 16, 20]),
    "k": st.sampled_from([4, 16, 24]), "hw": st.integers(4, 9), "kernel": st.sampled_from([1, 3]),
    "stride": st.sampled_from([(1, 1), (2, 2), (2, 1)]), "pad": st.sampled_from([0, 1]),
    "layout": st.sampled_from([("NHWC", "HWIO"), ("NCHW", "OIHW"), ("NHWC", "OHWI")]),
    "groups": st.sampled_from([1, 1, 1, 2]), "dilation": st.sampled_from([1, 1, 2]),
    "seed": st.integers(0, 10**6)})


@settings(max_examples=14, **SETTINGS)
@given(case=conv_cases)
def test_conv2d_int8_random_mappings_are_exact(tmp_path, case):
    c, k, g = case["c"], case["k"], case["groups"]
    assume(c % g == 0 and k % g == 0)
    layout, klayout = case["layout"]
    hw, kern, pad = case["hw"], case["kernel"], case["pad"]
    assume((hw + 2 * pad - case["dilation"] * (kern - 1) - 1) >= 0)
    xshape = dict(zip("NHWC", (case["n"], hw, hw + 1, c)))
    wshape = dict(zip("OIHW", (k, c // g, kern, kern)))
    xs, ws = tuple(xshape[a] for a in layout), tuple(wshape[a] for a in klayout)
    kw = dict(stride=case["stride"], pad=(pad, pad, pad, 0), layout=layout, klayout=klayout,
              groups=g, dilation=(case["dilation"],) * 2)
    mod = conv_module(xs, ws, **kw)
    op = the_op(mod)
    mapping = random_gemmini_mapping(op.problem, ARCH, case["seed"])
    assume(mapping is not None)
    assert_valid(mapping, op.problem, ARCH)
    x, w = random_operands(np.random.default_rng(case["seed"]), [xs, ws], "int8")
    out, counts = run(lower_module(mod, mapping, ARCH, op), CFG, [x, w], tmp_path)
    np.testing.assert_array_equal(out, conv_ref(x, w, **kw))
    assert counts["macs"] == op.problem.macs


@settings(max_examples=8, **SETTINGS)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       batch=st.sampled_from([None, "fold", "batch"]), seed=st.integers(0, 10**6))
def test_matmul_int8_random_mappings_are_exact(tmp_path, m, k, n, batch, seed):
    ashape, bshape = (m, k), (k, n)
    if batch == "fold":
        ashape = (2, m, k)
    elif batch == "batch":
        ashape, bshape = (3, m, k), (3, k, n)
    mod = matmul_module(ashape, bshape)
    op = the_op(mod)
    mapping = random_gemmini_mapping(op.problem, ARCH, seed)
    assume(mapping is not None)
    a, b = random_operands(np.random.default_rng(seed), [ashape, bshape], "int8")
    out, _ = run(lower_module(mod, mapping, ARCH, op), CFG, [a, b], tmp_path)
    np.testing.assert_array_equal(out, np.matmul(a.astype(np.int32), b.astype(np.int32)))


def test_float32_conv_and_matmul(tmp_path):
    cfg = GemminiConfig(dtype="float32")
    arch = cfg.architecture()
    rng = np.random.default_rng(3)
    mod = conv_module((1, 9, 9, 20), (3, 3, 20, 24), dtype="float32", stride=(2, 2),
                      pad=(1, 1, 1, 1))
    op = the_op(mod)
    mapping = random_gemmini_mapping(op.problem, arch, 5)
    x, w = random_operands(rng, [(1, 9, 9, 20), (3, 3, 20, 24)], "float32")
    out, _ = run(lower_module(mod, mapping, arch, op), cfg, [x, w], tmp_path)
    ref = conv_ref(x, w, (2, 2), (1, 1, 1, 1))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    mod = matmul_module((17, 33), (33, 30), dtype="float32")
    op = the_op(mod)
    a, b = random_operands(rng, [(17, 33), (33, 30)], "float32")
    out, _ = run(lower_module(mod, random_gemmini_mapping(op.problem, arch, 6), arch, op), cfg,
                 [a, b], tmp_path)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_channels_padded_to_the_array_width(tmp_path):
    """3 input channels: the mapping schedules 16 (whole rows); mvin moves only the real 3."""
    xs, ws = (1, 12, 12, 3), (3, 3, 3, 20)
    mod = conv_module(xs, ws, stride=(2, 2), pad=(1, 1, 1, 1))
    op = the_op(mod)
    padded = pad_channels(op.problem, CFG.dim)
    assert (padded.size["C"], padded.size["K"]) == (16, 32)
    mapping = Mapping([L(temporal={"P": 6}), L(temporal={"R": 3, "S": 3, "K": 2},
                                               spatial_x={"C": 16}, spatial_y={"K": 16}),
                       L(temporal={"Q": 6}), L()])
    assert_valid(mapping, padded, ARCH)
    x, w = random_operands(np.random.default_rng(4), [xs, ws], "int8")
    out, c = run(lower_module(mod, mapping, ARCH, op), CFG, [x, w], tmp_path)
    np.testing.assert_array_equal(out, conv_ref(x, w, (2, 2), (1, 1, 1, 1)))
    assert c["macs"] == op.problem.macs  # the padding is not computed
    assert c["bytes_out"] == 6 * 6 * 20 * 4


def test_rows_beyond_capacity_are_rejected():
    """Within the words, but 3-wide chunks need a whole 16-wide row per pixel: the checker
    counts rows as the plan does (and CoSA schedules in rows)."""
    op = the_op(conv_module((1, 130, 130, 3), (1, 1, 3, 16)))
    mapping = Mapping([L(temporal={"P": 130}), L(spatial_x={"C": 3}, spatial_y={"K": 16}),
                       L(temporal={"Q": 130}), L()])
    violations = check_mapping(mapping, op.problem, ARCH)  # 50700 words fit 262144
    assert [v.kind for v in violations] == ["rows"]  # 16900 + 3 rows do not fit 16384
    assert "16903 rows" in str(violations[0])
    with pytest.raises(UnsupportedMapping, match="scratchpad rows"):
        make_plan(op.problem, mapping, ARCH, CFG)
    big = GemminiConfig(scratchpad_kib=512)
    # one row per input pixel, one per input channel of the weights
    assert make_plan(op.problem, mapping, big.architecture(), big).spad_rows == 130 * 130 + 3


def test_wrong_dtype_falls_back():
    # (depthwise convolutions run on the array: test_gemmini_depthwise.py)
    mod = matmul_module((16, 16), (16, 16), dtype="float32")
    op = the_op(mod)
    with pytest.raises(NotImplementedError, match="float32"):
        lower_module(mod, random_gemmini_mapping(op.problem, ARCH, 0), ARCH, op)


def test_functional_model_errors_reach_the_caller(tmp_path):
    """Code built for a 256 KiB scratchpad, run on a 4 KiB one: the bad mvin is reported."""
    mod = matmul_module((64, 64), (64, 64))
    mapping = Mapping([L(temporal={"M": 64}), L(temporal={"N": 4, "K": 4}, spatial_x={"K": 16},
                                                 spatial_y={"N": 16}), L(), L()])
    with loop_instructions(False):  # the bad mvin (loop_ws would stop on its bounds first)
        lowered = lower_module(mod, mapping, ARCH)
    tiny = GemminiConfig(scratchpad_kib=4)
    from tvm_cosa.target.gemmini import codegen

    codegen.export(lowered, tiny, tmp_path / "t.so")
    vm, fm = codegen.load(tmp_path / "t.so", tiny)
    fm.reset()
    a = np.ones((64, 64), np.int8)
    with pytest.raises(Exception, match="Gemmini functional model"):
        vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(a))
    assert "outside the scratchpad (256 rows)" in fm.error_message
