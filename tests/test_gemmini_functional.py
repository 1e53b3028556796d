"""The C functional model of the Gemmini ISA, driven command by command through ctypes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_cosa.target.gemmini.config import GemminiConfig
from tvm_cosa.target.gemmini.functional import (
    ACC_BIT, ACCUMULATE_BIT, FULL_BIT, GARBAGE_ADDR, FunctionalModel, GemminiError)

WS, OS = 1, 0


@pytest.fixture(scope="module")
def model():
    return FunctionalModel(GemminiConfig())


@pytest.fixture
def gm(model):
    model.reset()
    yield model
    model.reset()


def int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def matmul_ws(gm, a, b, c_addr=ACC_BIT, a_addr=0, b_addr=4096):
    """A (rows x k) @ B (k x cols) on the array into the accumulator at c_addr."""
    rows, k = a.shape
    cols = b.shape[1]
    assert gm.mvin(a, a_addr, k, rows) == 0
    assert gm.mvin(b, b_addr, cols, k, id=1) == 0
    assert gm.call("extended_config_ex", WS, 0, 0, 1, 0, 0) == 0
    assert gm.call("extended_preload", b_addr, c_addr, cols, k, cols, rows) == 0
    assert gm.call("extended_compute_preloaded", a_addr, GARBAGE_ADDR, k, rows, 16, 16) == 0


def read_acc(gm, rows, cols, addr=0):
    out = np.zeros((rows, cols), np.int32)
    assert gm.mvout(out, ACC_BIT | FULL_BIT | addr, cols, rows) == 0
    return out


def test_hardware_parameters_follow_the_config(model):
    assert (model.dim, model.spad_rows, model.acc_rows) == (16, 16384, 1024)
    assert (model.elem_bytes, model.acc_bytes, model.is_float) == (1, 4, False)


def test_int8_matmul_is_exact_in_int32(gm):
    rng = np.random.default_rng(0)
    a, b = int8(rng, (16, 16)), int8(rng, (16, 16))
    a[0, :] = -128  # -128 * -128 * 16 = 262144 does not fit in 16 bits
    b[:, 0] = -128
    matmul_ws(gm, a, b)
    got = read_acc(gm, 16, 16)
    np.testing.assert_array_equal(got, a.astype(np.int32) @ b.astype(np.int32))
    assert got[0, 0] == 262144
    gm.check()


def test_accumulate_bit_adds_and_overwrite_replaces(gm):
    rng = np.random.default_rng(1)
    a1, a2, b = int8(rng, (16, 16)), int8(rng, (16, 16)), int8(rng, (16, 16))
    matmul_ws(gm, a1, b)
    matmul_ws(gm, a2, b, c_addr=ACC_BIT | ACCUMULATE_BIT)
    ref = (a1.astype(np.int32) + a2.astype(np.int32)) @ b.astype(np.int32)
    np.testing.assert_array_equal(read_acc(gm, 16, 16), ref)
    matmul_ws(gm, a2, b)  # overwrite
    np.testing.assert_array_equal(read_acc(gm, 16, 16), a2.astype(np.int32) @ b.astype(np.int32))


def test_compute_accumulated_reuses_the_preloaded_weights(gm):
    rng = np.random.default_rng(2)
    a1, a2, b = int8(rng, (16, 16)), int8(rng, (16, 16)), int8(rng, (16, 16))
    matmul_ws(gm, a1, b)
    gm.mvin(a2, 200, 16, 16)
    gm.mvin(np.zeros((16, 16), np.int8), 4096, 16, 16, id=1)  # the spad copy of B is gone
    assert gm.call("extended_preload", GARBAGE_ADDR, ACC_BIT | 32, 16, 16, 16, 16) == 0
    assert gm.call("extended_compute_accumulated", 200, GARBAGE_ADDR, 16, 16, 16, 16) == 0
    np.testing.assert_array_equal(read_acc(gm, 16, 16, 32),
                                  a2.astype(np.int32) @ b.astype(np.int32))
    c = gm.counters()
    assert (c["compute_preloaded"], c["compute_accumulated"], c["preload"]) == (1, 1, 2)


def test_partial_blocks_are_zero_padded(gm):
    rng = np.random.default_rng(3)
    a, b = int8(rng, (5, 3)), int8(rng, (3, 7))
    gm.mvin(np.full((16, 16), 99, np.int8), 0, 16, 16)  # stale data around the block
    matmul_ws(gm, a, b)
    got = read_acc(gm, 5, 7)
    np.testing.assert_array_equal(got, a.astype(np.int32) @ b.astype(np.int32))
    assert gm.counters()["macs"] == 5 * 3 * 7
    # columns beyond c_cols are not written
    assert (gm.row(ACC_BIT)[7:] == 0).all()


def test_a_stride_reads_every_nth_row(gm):
    rng = np.random.default_rng(4)
    a, b = int8(rng, (16, 16)), int8(rng, (16, 16))
    gm.mvin(a, 0, 16, 16)
    gm.mvin(b, 100, 16, 16, id=1)
    gm.call("extended_config_ex", WS, 0, 0, 2, 0, 0)
    gm.call("extended_preload", 100, ACC_BIT, 16, 16, 16, 8)
    gm.call("extended_compute_preloaded", 0, GARBAGE_ADDR, 16, 8, 16, 16)
    np.testing.assert_array_equal(read_acc(gm, 8, 16), a[::2].astype(np.int32) @ b.astype(np.int32))


def test_mvin_to_accumulator_and_zero_fill(gm):
    sums = np.arange(64, dtype=np.int32).reshape(4, 16) * 1000
    assert gm.mvin(sums, ACC_BIT | 8, 16, 4, id=2) == 0
    assert gm.mvin(sums, ACC_BIT | ACCUMULATE_BIT | 8, 16, 4, id=2) == 0
    np.testing.assert_array_equal(read_acc(gm, 4, 16, 8), 2 * sums)
    assert gm.mvin(None, ACC_BIT | 8, 16, 2) == 0  # NULL source: zeros
    np.testing.assert_array_equal(read_acc(gm, 4, 16, 8)[:2], 0)
    c = gm.counters()
    assert c["mvin_acc"] == 3 and c["bytes_in_acc"] == 2 * 4 * 16 * 4


def test_int32_accumulation_wraps_like_the_hardware(gm):
    big = np.full((1, 16), np.iinfo(np.int32).max, np.int32)
    one = np.ones((1, 16), np.int32)
    gm.mvin(big, ACC_BIT, 16, 1, id=2)
    gm.mvin(one, ACC_BIT | ACCUMULATE_BIT, 16, 1, id=2)
    assert (read_acc(gm, 1, 16) == np.iinfo(np.int32).min).all()


def test_counters_per_operator(gm):
    rng = np.random.default_rng(5)
    a, b = int8(rng, (16, 16)), int8(rng, (16, 16))
    gm.call("begin_op", 7)
    matmul_ws(gm, a, b)
    out = np.zeros((16, 16), np.int32)
    gm.mvout(out, ACC_BIT | FULL_BIT, 16, 16)
    gm.call("fence")
    assert gm.call("end_op") == 0
    gm.call("begin_op", 9)
    gm.mvin(a, 0, 16, 8)
    gm.call("end_op")
    c7, c9, total = gm.counters(7), gm.counters(9), gm.counters()
    assert gm.op_ids() == [7, 9]
    assert (c7["mvin"], c7["mvout"], c7["fence"], c7["config_ex"]) == (2, 1, 1, 1)
    assert (c7["bytes_in"], c7["bytes_out"], c7["macs"]) == (512, 1024, 4096)
    assert (c9["mvin"], c9["bytes_in"]) == (1, 128)
    assert total["mvin"] == 3 and total["config_ld"] == 3 and total["config_st"] == 1
    assert c7["spad_rows_used"] == 4096 + 16 and c7["acc_rows_used"] == 16
    assert (c7["calls"], c9["calls"], total["calls"]) == (1, 1, 2)
    assert gm.counters(12345)["mvin"] == 0


@pytest.mark.parametrize("command, args, message", [
    ("extended_mvin", (None, 16383, 16, 2), "outside the scratchpad"),
    ("extended_mvin", (None, ACC_BIT | 1020, 16, 5), "outside the accumulator"),
    ("extended_mvin", (None, 0, 17, 1), "1..16"),
    ("extended_preload", (GARBAGE_ADDR, ACC_BIT, 16, 16, 16, 16), "no dataflow configured"),
    ("extended_compute_preloaded", (0, GARBAGE_ADDR, 16, 16, 16, 16), "no preload"),
    ("extended_mvout", (None, ACC_BIT | FULL_BIT, 16, 1), "NULL destination"),
    ("extended_config_ex", (WS, 1, 0, 1, 0, 0), "not modelled"),
])
def test_errors_are_reported_not_silent(gm, command, args, message):
    assert gm.call(command, *args) != 0
    assert message in gm.error_message
    with pytest.raises(GemminiError, match=message):
        gm.check()


def test_an_error_stops_the_model(gm):
    a = np.ones((16, 16), np.int8)
    gm.mvin(a, 0, 16, 16)
    assert gm.mvin(a, 16380, 16, 16) != 0  # 16380 + 15 >= 16384
    assert "rows 16380..16395" in gm.error_message
    assert gm.mvin(a * 3, 0, 16, 16) != 0  # ignored after the error
    assert (gm.row(0) == 1).all()
    gm.reset()
    assert gm.status == 0 and gm.error_message == "" and (gm.row(0) == 0).all()


def test_compute_rows_past_the_end_with_a_stride(gm):
    gm.call("extended_config_ex", WS, 0, 0, 4, 0, 0)
    gm.call("extended_preload", GARBAGE_ADDR, GARBAGE_ADDR, 16, 16, 16, 16)
    # rows 16320 + 4 * 15 = 16380 fits; 16330 + 60 does not
    assert gm.call("extended_compute_preloaded", 16320, GARBAGE_ADDR, 16, 16, 16, 16) == 0
    gm.call("extended_preload", GARBAGE_ADDR, GARBAGE_ADDR, 16, 16, 16, 16)
    assert gm.call("extended_compute_accumulated", 16330, GARBAGE_ADDR, 16, 16, 16, 16) != 0


def test_mvout_without_fence_is_an_error_at_end_of_operator(gm):
    gm.call("begin_op", 1)
    gm.mvout(np.zeros((1, 16), np.int32), ACC_BIT | FULL_BIT, 16, 1)
    assert gm.call("end_op") != 0
    assert "fence" in gm.error_message


def test_reading_back_moved_out_data_needs_a_fence(gm):
    """The DMA does not order a mvin after a mvout of the same DRAM: partial sums that go out and
    come back need gemmini_fence() in between; other memory does not."""
    dram = np.zeros((4, 16), np.int32)
    other = np.ones((4, 16), np.int32)
    gm.mvout(dram, ACC_BIT | FULL_BIT, 16, 4)
    assert gm.mvin(other, ACC_BIT | 8, 16, 4, id=2) == 0  # not what was written
    assert gm.mvin(dram[2:], ACC_BIT | 8, 16, 2, id=2) != 0
    assert "fence" in gm.error_message
    gm.reset()
    gm.mvout(dram, ACC_BIT | FULL_BIT, 16, 4)
    gm.call("fence")
    assert gm.mvin(dram, ACC_BIT | 8, 16, 4, id=2) == 0


def test_output_stationary_accumulates_in_the_array(gm):
    rng = np.random.default_rng(6)
    a1, a2, b1, b2 = (int8(rng, (16, 16)) for _ in range(4))
    d = rng.integers(-1000, 1000, size=(16, 16)).astype(np.int8)
    gm.mvin(a1, 0, 16, 16)
    gm.mvin(a2, 16, 16, 16)
    gm.mvin(b1, 32, 16, 16, id=1)
    gm.mvin(b2, 48, 16, 16, id=1)
    gm.mvin(d, 64, 16, 16)
    gm.call("extended_config_ex", OS, 0, 0, 1, 0, 0)
    gm.call("extended_preload", 64, GARBAGE_ADDR, 16, 16, 16, 16)
    gm.call("extended_compute_preloaded", 0, 32, 16, 16, 16, 16)
    gm.call("extended_preload", GARBAGE_ADDR, ACC_BIT, 16, 16, 16, 16)
    gm.call("extended_compute_accumulated", 16, 48, 16, 16, 16, 16)
    i32 = lambda x: x.astype(np.int32)  # noqa: E731
    np.testing.assert_array_equal(read_acc(gm, 16, 16),
                                  i32(d) + i32(a1) @ i32(b1) + i32(a2) @ i32(b2))
    gm.check()


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 16), k=st.integers(1, 16), cols=st.integers(1, 16),
       seed=st.integers(0, 2**31), accumulate=st.booleans())
def test_property_random_blocks_match_numpy(model, rows, k, cols, seed, accumulate):
    model.reset()
    rng = np.random.default_rng(seed)
    a, b = int8(rng, (rows, k)), int8(rng, (k, cols))
    start = rng.integers(-2**20, 2**20, size=(rows, cols), dtype=np.int32)
    model.mvin(start, ACC_BIT | 100, cols, rows, id=2)
    flag = ACCUMULATE_BIT if accumulate else 0
    matmul_ws(model, a, b, c_addr=ACC_BIT | flag | 100, a_addr=300, b_addr=16384 - k)
    ref = a.astype(np.int32) @ b.astype(np.int32) + (start if accumulate else 0)
    np.testing.assert_array_equal(read_acc(model, rows, cols, 100), ref)
    model.check()


def test_float32_config_computes_in_float():
    fm = FunctionalModel(GemminiConfig(dtype="float32", dim=4, scratchpad_kib=4, accumulator_kib=1))
    fm.reset()
    assert (fm.dim, fm.spad_rows, fm.acc_rows, fm.is_float) == (4, 256, 64, True)
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    fm.mvin(a, 0, 3, 4)
    fm.mvin(b, 252, 4, 3, id=1)
    fm.call("extended_config_ex", WS, 0, 0, 1, 0, 0)
    fm.call("extended_preload", 252, ACC_BIT, 4, 3, 4, 4)
    fm.call("extended_compute_preloaded", 0, GARBAGE_ADDR, 3, 4, 4, 4)
    out = np.zeros((4, 4), np.float32)
    fm.mvout(out, ACC_BIT | FULL_BIT, 4, 4)
    np.testing.assert_allclose(out, a @ b, rtol=1e-6)
    assert fm.mvin(a, 254, 3, 4) != 0 and "256 rows" in fm.error_message


def test_the_model_works_after_the_guard_library_is_loaded():
    """load_guard() puts refusing gemmini_* symbols in the process's global scope (vm.py); a
    functional model loaded later still calls its own functions, not those."""
    from tvm_cosa.target.gemmini.functional import load_guard

    load_guard()
    fm = FunctionalModel(GemminiConfig())
    fm.reset()
    rng = np.random.default_rng(7)
    a, b = int8(rng, (16, 16)), int8(rng, (16, 16))
    matmul_ws(fm, a, b)
    assert fm.call("fence") == 0
    np.testing.assert_array_equal(read_acc(fm, 16, 16), a.astype(np.int32) @ b.astype(np.int32))
