"""The built-in cost model against real Timeloop 019f107 runs (tests/data/timeloop-reference).

Every reference case is re-read from its own arch.yaml / prob.yaml / map.yaml and recomputed:
validity and Timeloop's error text, cycles, every level's utilized capacity, instances,
partition size, reads, fills and updates exactly, energy within 1% (it agrees to ~1e-9).
The closed-form counting is also checked against an explicit walk of Timeloop's iteration
order on random loop nests (hypothesis).
"""

import itertools
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tvm_cosa import (InputError, LevelMapping, Mapping, Problem, check_mapping,
                      load_architecture, preset)
from tvm_cosa.cost_model import ESTIMATE_LABEL, Evaluation, evaluate, lower_bound_cycles
from tvm_cosa.cost_model.nest import TensorShape, distinct_children, fills
from tvm_cosa.timeloop import read_mapping
from tvm_cosa.problem import prime_factors

REFERENCE = Path(__file__).parent / "data" / "timeloop-reference"
CASES = sorted(p.name for p in REFERENCE.iterdir() if (p / "summary.json").is_file())
VALID = [c for c in CASES if json.loads((REFERENCE / c / "summary.json").read_text())["valid"]]
COUNTS = ("utilized_capacity", "partition_size", "utilized_instances", "utilized_clusters",
          "reads", "fills", "updates", "temporal_reductions", "address_generations_per_cluster")


def load_case(case, arch=None):
    folder = REFERENCE / case
    problem = Problem.from_yaml(folder / "prob.yaml")
    arch = arch or load_architecture(folder / "arch.yaml")
    mapping = read_mapping(folder / "map.yaml", problem, arch)
    return problem, arch, mapping, json.loads((folder / "summary.json").read_text())


def test_reference_folder_is_complete():
    assert len(CASES) == 50 and len(VALID) == 44


@pytest.mark.parametrize("case", CASES)
def test_reference_case(case):
    problem, arch, mapping, ref = load_case(case)
    ev = evaluate(mapping, problem, arch)
    assert ev.backend == "builtin"
    assert ev.valid == ref["valid"]
    if not ref["valid"]:
        assert f"ERROR: {ev.error}" == ref["error"]
        assert ev.to_summary()["error"] == ref["error"]
        return
    assert ev.cycles == ref["cycles"]
    assert ev.computes == ref["computes"]
    assert round(ev.utilization, 2) == ref["utilization"]
    assert ev.arithmetic["utilized_instances"] == ref["arithmetic"]["utilized_instances"]
    assert [lv.name for lv in ev.levels] == [lv["name"] for lv in ref["levels"]]
    for lv, rl in zip(ev.levels, ref["levels"]):
        assert lv.cycles == rl["cycles"], lv.name
        assert round(lv.bandwidth_throttling, 2) == rl["bandwidth_throttling"]
        assert set(lv.tensors) == set(rl["dataspaces"]), lv.name
        for tensor, expected in rl["dataspaces"].items():
            got = lv.tensors[tensor]
            for field in COUNTS:
                assert getattr(got, field) == expected[field], (lv.name, tensor, field)
            assert got.energy_total_pJ == pytest.approx(expected["energy_total_pJ"], abs=0.01)
    assert ev.energy_pJ == pytest.approx(ref["energy_pJ"], rel=1e-6)


RUN_INFO = ("timeloop", "command", "wall_s", "meta", "exit_code")


def summary_differences(got, expected, path=""):
    """Fields of a reference summary.json that `got` does not reproduce exactly."""
    if isinstance(expected, dict):
        out = []
        for key, value in expected.items():
            if key in RUN_INFO:
                continue
            if not isinstance(got, dict) or key not in got:
                out.append(f"{path}.{key} missing")
            elif key == "energy_per_scalar_access_pJ_derived":  # from 2-decimal prints
                if got[key] != pytest.approx(value, rel=1e-3, abs=1e-9):
                    out.append(f"{path}.{key}: {got[key]!r} vs {value!r}")
            else:
                out += summary_differences(got[key], value, f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{path}: {got!r} vs {expected!r}"]
        return [d for i, (a, b) in enumerate(zip(got, expected))
                for d in summary_differences(a, b, f"{path}[{i}]")]
    return [] if got == expected else [f"{path}: {got!r} vs {expected!r}"]


def test_summary_equals_reference_field_by_field():
    """to_summary(rounded=True) reproduces every field of every summary.json exactly, networks,
    printed energies and per-compute energies included."""
    for case in CASES:
        problem, arch, mapping, ref = load_case(case)
        summary = evaluate(mapping, problem, arch).to_summary(rounded=True)
        assert summary_differences(summary, ref) == [], case


@pytest.mark.parametrize("name", ["simba", "gemmini"])
def test_presets_carry_timeloops_energies(name):
    """The presets' energy tables are what Timeloop used: same energy, not an estimate."""
    arch = preset(name)
    assert not any(lv.read_energy_pJ is None for lv in arch.levels)
    cases = [c for c in VALID if c.startswith(name)]
    for case in cases:
        problem, _, mapping, ref = load_case(case, arch)
        ev = evaluate(mapping, problem, arch)
        assert not ev.energy_estimated
        assert ev.energy_pJ == pytest.approx(ref["energy_pJ"], rel=1e-6), case
        assert ev.cycles == ref["cycles"]


def test_energy_estimate_is_labelled():
    problem, arch, mapping, _ = load_case("simba__r50_outputs_input.8__cosa")
    assert all(lv.read_energy_pJ is None for lv in arch.levels)  # plain Timeloop file
    ev = evaluate(mapping, problem, arch)
    assert ev.energy_estimated
    assert ev.to_summary()["energy_note"] == ESTIMATE_LABEL
    assert ESTIMATE_LABEL in ev.describe()
    assert "(estimated)" in str(ev)


def test_energy_table_changes_energy_only():
    problem, arch, mapping, _ = load_case("simba__r50_outputs_input.8__cosa")
    from tvm_cosa.architecture_yaml import apply_energy_table
    doubled = apply_energy_table(arch, {"DRAM": {"read": 12800.0, "write": 12800.0}})
    a, b = evaluate(mapping, problem, arch), evaluate(mapping, problem, doubled)
    dram = sum(t.energy_total_pJ for t in a.level("DRAM").tensors.values())
    assert b.cycles == a.cycles
    assert b.energy_pJ == pytest.approx(a.energy_pJ + dram)
    assert b.energy_estimated  # the other levels still use the estimate


def test_describe_lists_every_level_and_tensor():
    problem, arch, mapping, ref = load_case("gemmini__r50_outputs_input.8__hand")
    text = evaluate(mapping, problem, arch).describe()
    for lv in ref["levels"]:
        assert lv["name"] in text
    assert f"cycles {ref['cycles']}" in text


# ---- the closed form against an explicit walk ---------------------------------------------
def explicit_fills(shape, tile_ext, loops):
    """Timeloop's iteration order written out: every 0/1 index vector (innermost loop fastest),
    weighted by prod(n - 1) over its ones; each box compared with the previous one under
    Timeloop's reset-on-stride-change rule: the set difference when the translation equals
    the last one (or there is none), else the whole box and no translation."""
    extents = shape.extents(tile_ext)
    full = math.prod(extents)
    total, last, translation = 0, None, None
    for bits in itertools.product((0, 1), repeat=len(loops)):
        idx = bits[::-1]  # loops are innermost first; product varies the last slot fastest
        offset = {}
        weight = 1
        for (d, n, stride), i in zip(loops, idx):
            offset[d] = offset.get(d, 0) + i * stride
            weight *= (n - 1) if i else 1
        low = tuple(sum(c * offset.get(d, 0) for d, c in axis) for axis in shape.axes)
        if last is None:
            delta = full
        else:
            shift = tuple(a - b for a, b in zip(low, last))
            if translation is None or translation == shift:
                old = {p for p in itertools.product(*(range(b, b + e)
                                                      for b, e in zip(last, extents)))}
                new = {p for p in itertools.product(*(range(b, b + e)
                                                      for b, e in zip(low, extents)))}
                delta, translation = len(new - old), shift
            else:
                delta, translation = full, None
        total += weight * delta
        last = low
    return total


@st.composite
def nests(draw):
    """A conv-like Inputs tensor (strided sliding windows) or a plain one, a tile, and the
    loops above it with the strides a real nest gives them."""
    dims = list(range(6))  # N C P Q R S
    ws, hs = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
    wd, hd = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
    if draw(st.booleans()):
        axes = (((0, 1),), ((1, 1),), ((3, hs), (5, hd)), ((2, ws), (4, wd)))
    else:
        axes = (((1, 1),), ((4, 1),), ((5, 1),))
    ext = [draw(st.integers(1, 4)) for _ in dims]
    tile_ext = tuple(ext)
    loops = []
    for _ in range(draw(st.integers(0, 7))):
        d, n = draw(st.sampled_from(dims)), draw(st.integers(2, 4))
        loops.append((d, n, ext[d]))
        ext[d] *= n
    return TensorShape(axes), tile_ext, tuple(loops)


@settings(max_examples=300, deadline=None)
@given(nests())
def test_closed_form_equals_explicit_walk(case):
    shape, tile_ext, loops = case
    full = shape.size(tile_ext)
    assert fills(shape, tile_ext, full, loops) == explicit_fills(shape, tile_ext, loops)


def test_halo_reuse_only_along_the_innermost_loop():
    """CoSA's _outputs_input.8 map: DRAM Q7 (outer) P2 (inner); the GlobalBuffer input tile is
    64 x 10 x 30: P steps reuse 2 of 30 columns, Q steps reload (README: 259840 words)."""
    shape = TensorShape((((0, 1),), ((1, 1),), ((3, 1), (5, 1)), ((2, 1), (4, 1))))
    tile = (1, 64, 28, 8, 3, 3)
    loops = ((2, 2, 28), (3, 7, 8))
    assert fills(shape, tile, shape.size(tile), loops) == 64 * 58 * 7 * 10 == 259840


def test_multicast_groups():
    weights = TensorShape((((5, 1),), ((1, 1),)))  # K, C
    inputs = TensorShape((((1, 1),), ((2, 1), (4, 1))))  # C, P + R
    spatial = ((1, 4, 1), (2, 2, 1), (5, 8, 1))  # C4, P2, K8
    assert distinct_children(weights, spatial) == 32
    assert distinct_children(inputs, spatial) == 8
    # P and R spatial on one axis: positions p + r collide (diagonal multicast).
    assert distinct_children(inputs, ((2, 3, 1), (4, 3, 1))) == 5


# ---- random mappings ----------------------------------------------------------------------
def random_mapping(problem, arch, rng):
    """Random factor placement over every temporal and spatial slot (half of them at the
    outermost level), random loop orders."""
    slots = [(i, kind) for i in range(arch.num_levels) for kind in ("t", "x", "y")
             if kind == "t" or (kind == "x" and arch.fanout(i)[0] > 1)
             or (kind == "y" and arch.fanout(i)[1] > 1)]
    levels = [LevelMapping() for _ in arch.levels]
    for d, size in problem.sizes:
        for p in prime_factors(size):
            # Half the factors go to the outermost level, so that many tiles fit.
            i, kind = (arch.num_levels - 1, "t") if rng.random() < 0.5 else rng.choice(slots)
            target = {"t": levels[i].temporal, "x": levels[i].spatial_x,
                      "y": levels[i].spatial_y}[kind]
            target[d] = target.get(d, 1) * p
    for lv in levels:
        order = list(problem.dims)
        rng.shuffle(order)
        lv.order = tuple(order)
    return Mapping(levels)


LAYERS = [Problem.conv2d(K=64, C=64, P=14, Q=14, R=3, S=3, name="conv3x3"),
          Problem.conv2d(K=32, C=16, P=7, Q=7, R=3, S=3, stride=2, name="conv3x3s2"),
          Problem.conv2d(K=128, C=64, P=8, Q=8, name="conv1x1"),
          Problem.conv2d(K=64, C=32, P=7, Q=7, stride=2, name="conv1x1s2"),
          Problem.matmul(M=64, N=48, K=32, name="mm"),
          Problem.conv2d(K=1, C=1, P=14, Q=14, R=3, S=3, groups=16, name="depthwise")]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), layer=st.sampled_from(LAYERS),
       arch_name=st.sampled_from(["simba", "gemmini"]))
def test_random_mappings_agree_with_the_validity_checker(seed, layer, arch_name):
    """Valid exactly when check_mapping(timeloop_rules=True) finds nothing; valid results obey
    the conservation laws of the counts."""
    arch = preset(arch_name)
    mapping = random_mapping(layer, arch, random.Random(seed))
    ev = evaluate(mapping, layer, arch)
    violations = check_mapping(mapping, layer, arch, timeloop_rules=True)
    assert ev.valid == (not violations), (ev.error, violations)
    if not ev.valid:
        kinds = {v.kind for v in violations}
        expected = ("split" if "both X and Y" in ev.error else
                    "capacity" if "tile size" in ev.error else "fanout")
        assert expected in kinds, (ev.error, violations)
        return
    assert ev.cycles >= lower_bound_cycles(layer, arch) >= layer.macs // arch.num_macs
    assert ev.arithmetic["utilized_instances"] * ev.arithmetic["cycles"] == layer.macs
    for lv in ev.levels:
        for name, t in lv.tensors.items():
            assert min(t.reads, t.fills, t.updates) >= 0
            assert t.utilized_instances * t.utilized_capacity >= 1
    top = ev.levels[-1]
    for name in layer.tensor_names:
        stats, full = top.tensors[name], layer.full_size(name)
        assert stats.utilized_capacity == stats.partition_size == full
        if layer.tensor(name).is_output:  # every output written at least once, no cold read
            assert stats.updates >= full and stats.reads == stats.updates - full
        elif not layer.tensor(name).has_halo():  # every weight read at least once
            assert stats.reads >= full
    assert ev.energy_pJ > 0 and ev.to_summary()["cycles"] == ev.cycles


def test_lower_bound_cycles():
    layer = Problem.conv2d(K=64, C=64, P=56, Q=56, R=3, S=3)
    simba = preset("simba")
    # Compute-bound: 115605504 MACs on 1024 MACs; the DRAM traffic takes fewer cycles.
    assert lower_bound_cycles(layer, simba) == 112896
    fc = Problem.conv2d(K=1000, C=2048, P=1, Q=1)
    # DRAM-bound: 2048000 weights + 2048 inputs read at 10 words/cycle.
    assert lower_bound_cycles(fc, simba) == math.ceil((2048000 + 2048) / 10)
    # A strided 1x1 convolution uses 7 x 7 of the 13 x 13 input positions per channel.
    strided = Problem.conv2d(K=2048, C=1024, P=7, Q=7, stride=2)
    assert strided.full_size("Inputs") == 1024 * 13 * 13
    assert lower_bound_cycles(strided, simba) == math.ceil((2048 * 1024 + 1024 * 49) / 10)


def test_bad_mappings_raise_input_errors():
    problem, arch, mapping, _ = load_case("simba__r50_outputs_input.8__cosa")
    with pytest.raises(InputError, match="levels"):
        evaluate(Mapping(mapping.levels[:-1]), problem, arch)
    bad = Mapping([LevelMapping(temporal={"Z": 2})] + mapping.levels[1:])
    with pytest.raises(InputError, match="'Z'"):
        evaluate(bad, problem, arch)
    bad = Mapping([LevelMapping(temporal={"P": 0})] + mapping.levels[1:])
    with pytest.raises(InputError, match="positive integer"):
        evaluate(bad, problem, arch)
    uneven = Mapping(mapping.levels, tile_levels={("Inputs", 4): 9})
    with pytest.raises(InputError, match="out of range"):
        evaluate(uneven, problem, arch)


def test_spatial_factor_without_fanout_is_invalid():
    problem, arch, mapping, _ = load_case("simba__r50_outputs_input.8__cosa")
    levels = list(mapping.levels)
    wb = arch.level_index("WeightBuffer")  # feeds as many AccumulationBuffers as it has
    levels[wb] = LevelMapping(temporal={}, spatial_x={"K": 2}, order=levels[wb].order,
                              keeps=levels[wb].keeps)
    ev = evaluate(Mapping(levels), problem, arch)
    assert not ev.valid and "no fan-out" in ev.error


def test_evaluation_is_cached_per_problem_and_arch_object():
    problem, arch, mapping, ref = load_case("gemmini__mm_256x512x512__mapper")
    first = evaluate(mapping, problem, arch)
    again = evaluate(mapping, problem, arch)
    other_arch = load_architecture(REFERENCE / "gemmini__mm_256x512x512__mapper" / "arch.yaml")
    assert first == again == evaluate(mapping, problem, other_arch)
    assert isinstance(first, Evaluation) and first.cycles == ref["cycles"]
