"""Uneven mappings (tile_levels, CoSA's Z) in the built-in cost model and the validity checker.

The oracle is a literal loop-nest simulator: on tiny layers it walks every iteration, keeps
each tensor's tile at each level as a set of coordinates (per the rules of `tvm_cosa.uneven`)
and counts the words that enter it (fills), that children draw from it (reads, one per distinct
word at a time: multicast) or write into it (updates; partial sums read back when a word was
written before). Weights and Outputs tiles never overlap partially, so there the literal count
is Timeloop's; Inputs are compared on layers without a sliding window.
"""

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tvm_cosa import (Architecture, Arithmetic, InputError, LevelMapping, Mapping, MemoryLevel,
                      Problem, check_mapping, preset)
from tvm_cosa.cost_model import evaluate
from tvm_cosa.problem import prime_factors
from tvm_cosa.uneven import box_violation, violations

from test_cost_model import random_mapping
from uneven_cases import gemmini_matmul_64

TENSORS = ("Weights", "Inputs", "Outputs")


def small_arch(keeps=None):
    """2 x 2 MACs under per-PE registers, a shared buffer, a global buffer and DRAM: a fan-out
    on X and Y, capacities large enough for any tile of the tiny layers."""
    keeps = keeps or {}
    levels = [
        MemoryLevel("Reg", 1 << 16, instances=4, mesh_x=2,
                    keeps=frozenset(keeps.get(0, TENSORS))),
        MemoryLevel("Buf", 1 << 16, instances=1, keeps=frozenset(keeps.get(1, TENSORS))),
        MemoryLevel("GLB", 1 << 16, instances=1, keeps=frozenset(keeps.get(2, TENSORS))),
        MemoryLevel("DRAM", None, instances=1, technology="DRAM"),
    ]
    return Architecture("small", Arithmetic(4, mesh_x=2), tuple(levels))


# ---- the literal simulator ----------------------------------------------------------------
def nest_loops(mapping, problem):
    """(level, spatial?, dim, n) innermost first: each level's spatial then temporal loops."""
    out = []
    for k, lv in enumerate(mapping.levels):
        for factors in (lv.spatial_x, lv.spatial_y):
            out += [(k, True, d, f) for d, f in factors.items() if f > 1]
        out += [(k, False, d, f) for d, f in lv.temporal_loops(problem.dims)]
    return out


def coordinate(problem, tensor, point):
    return tuple(sum(c * point.get(d, 0) for d, c in axis) for axis in problem.tensor(tensor).axes)


def simulate(mapping, problem, arch):
    """{(level, tensor): (fills, reads, updates)} per instance 0 of each kept level (not DRAM's
    fills), counted by walking the loop nest."""
    loops = nest_loops(mapping, problem)
    stride, strides = {}, []
    for _, _, d, n in loops:
        strides.append(stride.get(d, 1))
        stride[d] = stride.get(d, 1) * n
    temporal = [k for k, lp in enumerate(loops) if not lp[1]]  # innermost first
    top = arch.num_levels - 1

    def points(fixed, free):
        """Every index point: loops in `free` take all values, the others `fixed` (or 0)."""
        ranges = [range(loops[k][3]) if k in free else (fixed.get(k, 0),)
                  for k in range(len(loops))]
        for idx in itertools.product(*ranges):
            point = {}
            for k, v in enumerate(idx):
                d = loops[k][2]
                point[d] = point.get(d, 0) + v * strides[k]
            yield point

    def tile(tensor, level, bound, now, spread_above=()):
        """Coordinates of the tile of tensor at `level` (boundary `bound`) at time `now`; the
        spatial loops of the levels in `spread_above` take all values too (sibling tiles)."""
        free = {k for k, (lvl, sp, _, _) in enumerate(loops)
                if (sp and (lvl <= level or lvl in spread_above)) or (not sp and lvl <= bound)}
        return {coordinate(problem, tensor, p) for p in points(now, free)}

    # every temporal iteration, outermost loop slowest: {loop index: value}
    outer_first = list(reversed(temporal))
    times = [dict(zip(outer_first, idx))
             for idx in itertools.product(*(range(loops[k][3]) for k in outer_first))]

    out = {}
    for t in problem.tensor_names:
        chain = [i for i in range(arch.num_levels) if t in mapping.kept(arch, i)]
        is_out = problem.tensor(t).is_output
        for pos, p in enumerate(chain):
            child = chain[pos - 1] if pos else None
            bound = mapping.tile_level(t, p)
            fills = 0
            if p != top:
                held = set()
                for now in times:
                    cur = tile(t, p, bound, now)
                    fills += len(cur - held)
                    held = cur
            # What the children under instance 0 of p draw / write at each time step.
            spread = set(range((child if child is not None else -1) + 1, p + 1))
            drawn, seen, reread = 0, set(), 0
            held = {}
            for now in times:
                if child is None:  # the MACs: one word per distinct coordinate
                    free = {k for k, (lvl, sp, _, _) in enumerate(loops) if sp and lvl <= p}
                    delta = {coordinate(problem, t, q) for q in points(now, free)}
                else:
                    # each child instance: the words entering its tile (spatial above it spread)
                    cb = mapping.tile_level(t, child)
                    delta = set()
                    for sib in itertools.product(*(range(loops[k][3]) for k in range(len(loops))
                                                   if loops[k][1] and loops[k][0] in spread)):
                        fixed = dict(now)
                        fixed.update(zip([k for k in range(len(loops)) if loops[k][1]
                                          and loops[k][0] in spread], sib))
                        cur = tile(t, child, cb, fixed)
                        delta |= cur - held.get(sib, set())
                        held[sib] = cur
                drawn += len(delta)
                if is_out:
                    reread += len(delta & seen)
                    seen |= delta
            reads, updates = (reread, drawn) if is_out else (drawn, 0)
            out[(p, t)] = (fills, reads, updates)
    return out


def random_uneven_mapping(problem, arch, rng, uneven=True):
    """Random factors on every slot, random orders, random boundaries; the boundaries the rules
    reject are dropped one by one."""
    slots = [(i, kind) for i in range(arch.num_levels) for kind in ("t", "x", "y")
             if kind == "t" or (kind == "x" and arch.fanout(i)[0] > 1)
             or (kind == "y" and arch.fanout(i)[1] > 1)]
    while True:
        levels = [LevelMapping() for _ in arch.levels]
        for d, size in problem.sizes:
            for p in prime_factors(size):
                i, kind = rng.choice(slots)
                target = {"t": levels[i].temporal, "x": levels[i].spatial_x,
                          "y": levels[i].spatial_y}[kind]
                target[d] = target.get(d, 1) * p
        for lv in levels:
            order = list(problem.dims)
            rng.shuffle(order)
            lv.order = tuple(order)
        mapping = Mapping(levels)
        if not check_mapping(mapping, problem, arch):
            break
    if not uneven:
        return mapping
    top = arch.num_levels - 1
    for t in problem.tensor_names:
        chain = [i for i in range(top) if t in mapping.kept(arch, i)]
        bounds = sorted(rng.randrange(top) for _ in chain)
        for c, b in zip(chain, bounds):
            mapping.tile_levels[(t, c)] = b
    while check_mapping(mapping, problem, arch):
        mapping.tile_levels.pop(rng.choice(sorted(mapping.tile_levels)))
    return mapping


TINY = [Problem.conv2d(K=4, C=2, P=4, Q=2, R=3, S=1, name="conv3x1"),
        Problem.conv2d(K=2, C=4, P=4, Q=2, name="conv1x1"),
        Problem.conv2d(K=2, C=2, P=2, Q=2, R=1, S=2, stride=2, name="conv1x2s2"),
        Problem.matmul(M=4, N=6, K=4, name="mm")]


def no_window(problem, tensor):
    """True when no axis of `tensor` sums two dimensions of size > 1 (no halo)."""
    size = problem.size
    return all(sum(size[d] > 1 for d, _ in axis) <= 1 for axis in problem.tensor(tensor).axes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), layer=st.sampled_from(TINY), uneven=st.booleans(),
       bypass=st.booleans())
def test_model_equals_the_loop_nest_simulator(seed, layer, uneven, bypass):
    rng = random.Random(seed)
    keeps = {i: [t for t in TENSORS if rng.random() < 0.6] for i in range(3)} if bypass else {}
    arch = small_arch(keeps)
    mapping = random_uneven_mapping(layer, arch, rng, uneven)
    ev = evaluate(mapping, layer, arch)
    assert ev.valid, ev.error
    sim = simulate(mapping, layer, arch)
    for (level, t), (fills, reads, updates) in sim.items():
        if t == "Inputs" and not no_window(layer, t):
            continue
        got = ev.levels[level].tensors[t]
        assert (got.fills, got.reads, got.updates) == (fills, reads, updates), \
            (arch.levels[level].name, t, mapping.tile_levels)


# ---- even equivalence and properties -------------------------------------------------------
LAYERS = [Problem.conv2d(K=64, C=64, P=14, Q=14, R=3, S=3, name="conv3x3"),
          Problem.conv2d(K=64, C=32, P=7, Q=7, stride=2, name="conv1x1s2"),
          Problem.matmul(M=64, N=48, K=32, name="mm")]


def summary(ev):
    return ev.to_summary()


def moves_without_loops(mapping, arch, problem):
    """Boundaries that move a tile across levels whose loops are all trivial for it: the tile
    and its refilling loops stay what they were."""
    out = {}
    for t in problem.tensor_names:
        chain = [i for i in range(arch.num_levels - 1) if t in mapping.kept(arch, i)]
        for pos, c in enumerate(chain):
            lo = chain[pos - 1] if pos else 0
            hi = chain[pos + 1] if pos + 1 < len(chain) else arch.num_levels - 1
            for b in list(range(c - 1, lo - 1, -1)) + list(range(c + 1, hi)):
                between = range(min(b, c) + 1, max(b, c) + 1)
                if all(mapping.levels[k].temporal_product() == 1 for k in between):
                    out[(t, c)] = b
                    break
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), layer=st.sampled_from(LAYERS),
       arch_name=st.sampled_from(["simba", "gemmini"]))
def test_boundaries_over_empty_levels_change_nothing(seed, layer, arch_name):
    """An uneven mapping whose tiles are the even ones evaluates exactly as the even mapping."""
    arch = preset(arch_name)
    rng = random.Random(seed)
    mapping = random_mapping(layer, arch, rng)
    moved = moves_without_loops(mapping, arch, layer)
    uneven = Mapping(mapping.levels, moved)
    assert summary(evaluate(uneven, layer, arch)) == summary(evaluate(mapping, layer, arch))
    assert sorted(v.message for v in check_mapping(uneven, layer, arch)) == \
        sorted(v.message for v in check_mapping(mapping, layer, arch))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), layer=st.sampled_from(TINY))
def test_lowering_a_boundary_shrinks_the_tile_and_never_saves_fills(seed, layer):
    """Moving one boundary inwards: the tile is no larger, and the level receives no fewer words
    (a smaller tile is refilled by more loops); the MACs' work is unchanged. Only for tensors
    indexed by plain dimensions: a strided input's bounding box holds rows no MAC uses, which
    a smaller tile may skip."""
    rng = random.Random(seed)
    arch = small_arch()
    mapping = random_uneven_mapping(layer, arch, rng, uneven=False)
    base = evaluate(mapping, layer, arch)
    plain = [t.name for t in layer.tensors
             if all(len(axis) == 1 and axis[0][1] == 1 for axis in t.axes)]
    for t in plain:
        for c in range(1, arch.num_levels - 1):
            lowered = Mapping(mapping.levels, {(t, c): c - 1})
            if check_mapping(lowered, layer, arch):
                continue
            ev = evaluate(lowered, layer, arch)
            before, after = base.levels[c].tensors[t], ev.levels[c].tensors[t]
            assert after.utilized_capacity <= before.utilized_capacity
            assert after.fills >= before.fills
            assert ev.computes == base.computes
            for other in layer.tensor_names:  # other tensors are not affected
                if other != t:
                    for i in range(arch.num_levels):
                        if other in ev.levels[i].tensors:
                            assert ev.levels[i].tensors[other].to_dict() == \
                                base.levels[i].tensors[other].to_dict()


# ---- validity ------------------------------------------------------------------------------
def test_checker_accepts_uneven_tiles_that_fit_and_rejects_each_tensors_overflow():
    from dataclasses import replace

    layer, arch, levels, acc, spad = gemmini_matmul_64()
    even = Mapping(levels)
    assert check_mapping(even, layer, arch) == []
    # Outputs at the accumulator spanning the scratchpad's loops too: all 64 x 64 words.
    grown = Mapping(levels, {("Outputs", acc): spad})
    assert check_mapping(grown, layer, arch) == []
    ev, base = evaluate(grown, layer, arch), evaluate(even, layer, arch)
    assert ev.levels[acc].tensors["Outputs"].utilized_capacity == 4096
    assert base.levels[acc].tensors["Outputs"].utilized_capacity == 1024
    # even, the scratchpad's outer K loop drains and reloads every partial-sum tile; grown once
    assert base.levels[acc].tensors["Outputs"].fills == 1024 * 4 * 4
    assert ev.levels[acc].tensors["Outputs"].fills == 4096
    # A 2048-word accumulator holds the even tile but not the grown one: Outputs overflows.
    small = replace(arch, levels=tuple(replace(lv, entries=2048) if i == acc else lv
                                       for i, lv in enumerate(arch.levels)))
    assert check_mapping(even, layer, small) == []
    bad = check_mapping(grown, layer, small)
    assert {(v.kind, v.level) for v in bad} == {("capacity", "Accumulator"),
                                               ("rows", "Accumulator")}
    ev = evaluate(grown, layer, small)
    assert not ev.valid and "Accumulator" in ev.error


def test_rules_name_the_broken_boundary():
    layer = Problem.conv2d(K=8, C=4, P=4, Q=4)
    arch = small_arch()
    levels = [LevelMapping() for _ in arch.levels]
    levels[1].spatial_x = {"K": 2}
    levels[1].temporal = {"K": 2}  # Buf: K2 temporal above the K2 spatial
    levels[2].temporal = {"C": 4}
    levels[3].temporal = {"K": 2, "P": 4, "Q": 4}
    mapping = Mapping(levels)
    assert check_mapping(mapping, layer, arch) == []
    # Reg's Outputs tile spanning Buf's temporal K but not the K fan-out inside it: not a box.
    skip = Mapping(levels, {("Outputs", 0): 1})
    assert box_violation(skip, layer, "Outputs", 0) == ("K", (1, True), (1, False))
    assert [v.kind for v in check_mapping(skip, layer, arch)] == ["uneven"]
    assert not evaluate(skip, layer, arch).valid
    # Inner tile spanning more than the outer one.
    crossed = Mapping(levels, {("Weights", 1): 2, ("Weights", 2): 1})
    assert any("contain" in v.message for v in violations(crossed, layer, arch))
    # DRAM keeps whole tensors.
    assert "outermost" in violations(Mapping(levels, {("Inputs", 3): 2}), layer, arch)[0].message
    with pytest.raises(InputError, match="out of range"):
        evaluate(Mapping(levels, {("Inputs", 1): 7}), layer, arch)


def test_check_auto_counts_uneven_mappings_with_the_builtin_model(monkeypatch):
    """Timeloop has no uneven mappings: with Timeloop installed, "auto" still sends an uneven
    mapping to the built-in model, and an even one to Timeloop."""
    import tvm_cosa.check as check_module

    layer, arch = TINY[1], small_arch()
    mapping = random_uneven_mapping(layer, arch, random.Random(3), uneven=False)
    called = []
    monkeypatch.setattr(check_module, "find_timeloop", lambda path=None: "/opt/timeloop-model")
    monkeypatch.setattr(check_module, "run_timeloop",
                        lambda *a, **k: called.append("timeloop") or "timeloop ran")
    assert check_module.check(mapping, layer, arch) == "timeloop ran"
    buf = arch.level_index("Buf")
    uneven = Mapping(mapping.levels, {("Outputs", buf): buf - 1})
    assert check_mapping(uneven, layer, arch) == []
    ev = check_module.check(uneven, layer, arch)
    assert ev.backend == "builtin" and ev.valid and called == ["timeloop"]
