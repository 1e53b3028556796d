"""Problem tile sizes, architecture fanouts and the validity checker, against independent oracles."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_cosa import (Architecture, Arithmetic, InputError, LevelMapping, Mapping, MemoryLevel,
                      Problem, check_mapping, preset)
from tvm_cosa.problem import prime_factors


def touched_input_box(problem, extents):
    """Brute force: enumerate every (output, filter) point of the tile, collect input coords."""
    inputs = problem.tensor("Inputs")
    dims = list(extents)
    coords = set()
    for point in itertools.product(*(range(extents[d]) for d in dims)):
        idx = dict(zip(dims, point))
        coords.add(tuple(sum(c * idx.get(d, 0) for d, c in axis) for axis in inputs.axes))
    lo = [min(c[a] for c in coords) for a in range(len(inputs.axes))]
    hi = [max(c[a] for c in coords) for a in range(len(inputs.axes))]
    return math.prod(h - l + 1 for l, h in zip(lo, hi))


@settings(max_examples=60, deadline=None)
@given(p=st.integers(1, 5), q=st.integers(1, 4), r=st.integers(1, 3), s=st.integers(1, 3),
       c=st.integers(1, 3), hstride=st.integers(1, 3), wstride=st.integers(1, 3),
       hdil=st.integers(1, 2), wdil=st.integers(1, 2))
def test_input_tile_is_the_bounding_box_of_touched_points(p, q, r, s, c, hstride, wstride,
                                                          hdil, wdil):
    prob = Problem.conv2d(K=2, C=c, P=p, Q=q, R=r, S=s, stride=(hstride, wstride),
                          dilation=(hdil, wdil))
    extents = {"P": p, "Q": q, "R": r, "S": s, "C": c}
    assert prob.tensor("Inputs").tile_size(extents) == touched_input_box(prob, extents)


def test_padded_input_size_of_a_resnet_layer():
    # 3x3 stride-1 56x56 with padding 1: the input as Timeloop counts it is 64 x 58 x 58.
    prob = Problem.conv2d(K=64, C=64, P=56, Q=56, R=3, S=3)
    assert prob.full_size("Inputs") == 64 * 58 * 58
    assert prob.full_size("Weights") == 64 * 64 * 9
    assert prob.full_size("Outputs") == 64 * 56 * 56
    assert prob.macs == 64 * 64 * 9 * 56 * 56


def test_grouped_and_matmul_relations():
    dw = Problem.conv2d(K=1, C=1, P=7, Q=7, R=3, S=3, groups=32)
    assert dw.relevance()["G"] == {"Weights": 1, "Inputs": 1, "Outputs": 1}
    assert dw.full_size("Weights") == 32 * 9
    mm = Problem.matmul(M=4, N=5, K=6, batch=3)
    assert mm.relevance()["K"] == {"Weights": 1, "Inputs": 1, "Outputs": 0}
    assert mm.full_size("Outputs") == 3 * 4 * 5
    assert mm.dims_with_role("reduction") == {"K"}
    assert mm.dims_with_role("output_channel") == {"N"}
    conv = Problem.conv2d(K=8, C=4, P=5, Q=5, R=3, S=3)
    assert conv.dims_with_role("reduction") == {"C"}
    assert conv.dims_with_role("window") == {"R", "S"}
    assert conv.dims_with_role("pixel") == {"P", "Q", "N"}


def test_problem_rejects_bad_sizes():
    with pytest.raises(InputError, match="dimension K"):
        Problem.conv2d(K=0, C=4, P=5, Q=5)


@given(st.integers(1, 10_000))
def test_prime_factors_multiply_back(n):
    fs = prime_factors(n)
    assert math.prod(fs) == n
    assert all(f > 1 and all(f % k for k in range(2, int(f ** 0.5) + 1)) for f in fs)


def test_fanouts_of_the_presets_follow_the_instance_counts():
    simba = preset("simba")
    assert [simba.fanout(i) for i in range(simba.num_levels)] == [
        (1, 1), (8, 1), (1, 1), (8, 1), (16, 1), (1, 1)]
    gemmini = preset("gemmini")
    assert gemmini.fanout(gemmini.level_index("Accumulator")) == (16, 16)
    assert gemmini.levels[-1].read_bandwidth == pytest.approx(5.75 / 2)
    assert gemmini.bypass_matrix() == [[1, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1]]


def test_architecture_rejects_instances_that_do_not_divide():
    with pytest.raises(InputError, match="whole number of children"):
        Architecture("bad", Arithmetic(instances=10),
                     (MemoryLevel("L1", 64, instances=3), MemoryLevel("DRAM", None)))


def _all_at_top(problem, arch):
    """Every factor as a temporal loop at the outermost level: valid wherever tiles of 1 fit."""
    levels = [LevelMapping() for _ in arch.levels]
    levels[-1] = LevelMapping(temporal=dict(problem.sizes))
    return Mapping(levels)


def test_checker_accepts_a_trivial_mapping_and_names_each_violation():
    prob = Problem.conv2d(K=16, C=8, P=4, Q=4, R=3, S=3)
    arch = preset("simba")
    m = _all_at_top(prob, arch)
    assert check_mapping(m, prob, arch) == []

    # Factor product off.
    m.levels[-1].temporal["K"] = 8
    (v,) = check_mapping(m, prob, arch)
    assert v.kind == "factor_product" and "dimension K is 8" in v.message

    # Capacity: put everything in the 64-entry AccumulationBuffer (Outputs 16*4*4 = 256 words).
    m = _all_at_top(prob, arch)
    acc = arch.level_index("AccumulationBuffer")
    m.levels[acc].temporal, m.levels[-1].temporal = m.levels[-1].temporal, {}
    kinds = {(v.kind, v.level) for v in check_mapping(m, prob, arch)}
    assert ("capacity", "AccumulationBuffer") in kinds

    # Fanout: 16-way spatial under a level whose fanout is 8.
    m = _all_at_top(prob, arch)
    m.levels[-1].temporal["K"] = 1
    m.levels[acc].spatial_x = {"K": 16}
    violations = check_mapping(m, prob, arch)
    assert [v.kind for v in violations] == ["fanout"]
    # Timeloop only checks the cumulative count (16 <= 1024 MACs): it would accept it.
    assert check_mapping(m, prob, arch, timeloop_rules=True) == []


def test_gemmini_dataflow_restricts_spatial_dims():
    prob = Problem.conv2d(K=16, C=16, P=4, Q=4, R=1, S=1)
    arch = preset("gemmini")
    m = _all_at_top(prob, arch)
    acc = arch.level_index("Accumulator")
    m.levels[-1].temporal.update({"C": 1, "K": 1})
    m.levels[acc].spatial_x, m.levels[acc].spatial_y = {"C": 16}, {"K": 16}
    assert check_mapping(m, prob, arch) == []
    m.levels[acc].spatial_x, m.levels[acc].spatial_y = {"K": 16}, {"C": 16}
    assert {v.kind for v in check_mapping(m, prob, arch)} == {"spatial_dim"}


def test_uneven_tile_levels_change_the_checked_tile():
    prob = Problem.matmul(M=64, N=64, K=64)
    arch = preset("gemmini")
    spad = arch.level_index("Scratchpad")
    m = _all_at_top(prob, arch)
    m.levels[spad].temporal, m.levels[-1].temporal = dict(prob.sizes), {}
    assert m.tile_size(prob, "Inputs", spad) == 64 * 64
    # Counting only the loops below the scratchpad, the Inputs tile shrinks to one word.
    m.tile_levels[("Inputs", spad)] = spad - 1
    assert m.tile_size(prob, "Inputs", spad) == 1
    assert check_mapping(m, prob, arch) == []


def test_mapping_round_trips_through_dict():
    prob = Problem.conv2d(K=16, C=8, P=4, Q=4, R=3, S=3)
    arch = preset("simba")
    m = _all_at_top(prob, arch)
    m.levels[0].order = ("K", "C")
    m.levels[1].keeps = frozenset({"Outputs"})
    m.tile_levels[("Outputs", 1)] = 0
    back = Mapping.from_dict(m.to_dict())
    assert back.levels == m.levels and back.tile_levels == m.tile_levels


_LEVEL_FACTORS = st.dictionaries(st.sampled_from("RSPQCKN"), st.integers(1, 7), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_LEVEL_FACTORS, _LEVEL_FACTORS, _LEVEL_FACTORS), min_size=1,
                max_size=6), st.data())
def test_extents_through_is_the_product_of_the_factors_up_to_the_level(levels, data):
    """Every dimension any level lists, with the product of its factors at levels 0..level
    (1 where only levels above list it)."""
    mapping = Mapping([LevelMapping(temporal=t, spatial_x=x, spatial_y=y) for t, x, y in levels])
    level = data.draw(st.integers(-1, len(levels)))
    listed = {d for t, x, y in levels for d in (*t, *x, *y)}
    expected = {d: math.prod(t.get(d, 1) * x.get(d, 1) * y.get(d, 1)
                             for t, x, y in levels[:level + 1]) for d in listed}
    assert mapping.extents_through(level) == expected
