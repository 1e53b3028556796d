"""Lowering uneven schedules (tile_levels): in the generic TIR lowering each tensor's cache stage
sits at its own loop and the numbers stay TVM's / onnxruntime's; on Gemmini each tensor's
mvin / mvout follows its own boundary (functional model, exact)."""

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

tvm = pytest.importorskip("tvm")

import tvm_cosa  # noqa: E402
from pass_helpers import conv_module, matmul_module, random_mapping  # noqa: E402
from test_pass_lowering import assert_same_numbers, legalized_primfunc  # noqa: E402
from tvm_cosa import LevelMapping, Mapping, check_mapping  # noqa: E402
from tvm_cosa.relax.lowering import lower_generic  # noqa: E402
from tvm_cosa.uneven import single_moves  # noqa: E402

ARCHS = {name: tvm_cosa.preset(name) for name in ("gemmini", "simba")}


def uneven_variant(problem, arch, rng):
    """A random valid mapping with one to three of its boundaries moved (None if none can)."""
    for _ in range(10):
        mapping = random_mapping(problem, arch, rng)
        moves = single_moves(mapping, problem, arch)
        if not moves:
            continue
        rng.shuffle(moves)
        uneven = Mapping(mapping.levels, {})
        for key, b in moves[:3]:
            trial = Mapping(mapping.levels, {**uneven.tile_levels, key: b})
            if not check_mapping(trial, problem, arch):
                uneven = trial
        return uneven
    return None


MODULES = [lambda: conv_module(n=1, c=8, k=8, h=6, w=6, kernel=3, stride=1, pad=1, dilation=1,
                               groups=1, layout="NCHW", dtype="float32"),
           lambda: conv_module(n=1, c=4, k=8, h=8, w=8, kernel=1, stride=2, pad=0, dilation=1,
                               groups=1, layout="NHWC", dtype="float32"),
           lambda: matmul_module((8, 12), (12, 6), "float32")]


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(MODULES) - 1), arch_name=st.sampled_from(sorted(ARCHS)),
       seed=st.integers(0, 10**6))
def test_uneven_schedules_compute_the_same_numbers(which, arch_name, seed):
    arch = ARCHS[arch_name]
    op, default = legalized_primfunc(MODULES[which]())
    mapping = uneven_variant(op.problem, arch, random.Random(seed))
    if mapping is None:
        return
    assert mapping.tile_levels
    assert_same_numbers(default, lower_generic(default, op, mapping, arch), seed)


def stage_loops(func, suffix):
    """Annotations (level, spatial?) of the loops around the cache stage named ...suffix."""
    sch = tvm.s_tir.Schedule(func)
    (stage,) = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
                if sch.get(b).name_hint.endswith(suffix)]
    return [(str(sch.get(lp).annotations.get("cosa.level", "")),
             "cosa.spatial" in sch.get(lp).annotations) for lp in sch.get_loops(stage)]


def test_outputs_stage_spans_the_scratchpad_loops_and_the_array():
    """Gemmini arch, generic lowering: Outputs at the accumulator with the scratchpad as boundary
    are written back outside the scratchpad's loops; even, inside them. Either way the stage
    holds the whole array's tile (the spatial loops stay inside)."""
    arch = ARCHS["gemmini"]
    op, default = legalized_primfunc(matmul_module((64, 64), (64, 64), "float32"))
    acc, spad = arch.level_index("Accumulator"), arch.level_index("Scratchpad")
    levels = [LevelMapping(temporal={"M": 4}),
              LevelMapping(temporal={"M": 16}, spatial_x={"K": 16}, spatial_y={"N": 16}),
              LevelMapping(temporal={"N": 4, "K": 4}, order=("N", "K")), LevelMapping()]
    even, uneven = Mapping(levels), Mapping(levels, {("Outputs", acc): spad})
    for mapping in (even, uneven):
        assert check_mapping(mapping, op.problem, arch) == []
    scheduled = {m is uneven: lower_generic(default, op, m, arch) for m in (even, uneven)}
    for func in scheduled.values():
        assert_same_numbers(default, func)
    suffix = "global.accumulator"
    assert ("Scratchpad", False) in stage_loops(scheduled[False], suffix)
    assert all(level != "Scratchpad" for level, _ in stage_loops(scheduled[True], suffix))
    assert not any(spatial for _, spatial in stage_loops(scheduled[True], suffix))


def test_gemmini_lowering_follows_each_tensors_boundary(tmp_path):
    """On the functional model: exact numbers, and with the Outputs boundary at the scratchpad
    no partial sum leaves the accumulator (as the cost model counts: 4096 words to DRAM)."""
    from gemmini_util import lower_module, matmul_module as gemmini_matmul, random_operands, run
    from tvm_cosa.cost_model import evaluate
    from tvm_cosa.relax.extract import extract
    from tvm_cosa.target.gemmini.config import GemminiConfig
    from tvm_cosa.target.gemmini.loops import loop_instructions

    config = GemminiConfig()
    arch = config.architecture()
    acc, spad = arch.level_index("Accumulator"), arch.level_index("Scratchpad")
    mod = gemmini_matmul((64, 64), (64, 64))
    (op,) = extract(mod)
    levels = [LevelMapping(temporal={"M": 4}),
              LevelMapping(temporal={"M": 16}, spatial_x={"K": 16}, spatial_y={"N": 16}),
              LevelMapping(temporal={"N": 4, "K": 4}, order=("N", "K")), LevelMapping()]
    a, b = random_operands(np.random.default_rng(0), [(64, 64), (64, 64)], "int8")
    want = a.astype(np.int32) @ b.astype(np.int32)
    counts = {}
    for tile_levels in ({}, {("Outputs", acc): spad}):
        mapping = Mapping(levels, tile_levels)
        # command by command: a loop_ws keeps partial sums in the accumulator on its own
        with loop_instructions(False):
            lowered = lower_module(mod, mapping, arch)
        out, c = run(lowered, config, [a, b], tmp_path)
        np.testing.assert_array_equal(out, want)
        dram = evaluate(mapping, op.problem, arch).level("DRAM").tensors["Outputs"]
        assert c["bytes_out"] == dram.updates * 4  # int32 partial sums / results
        counts[bool(tile_levels)] = c
    assert counts[True]["mvin_acc"] == 0 < counts[False]["mvin_acc"]
    assert counts[True]["mvout"] < counts[False]["mvout"]


def test_pass_lowers_uneven_schedules_like_onnxruntime(tmp_path):
    """CoSAPass(uneven=True) end to end on a model of every conv flavour: each layer's cached
    schedule is made uneven (a random valid boundary move), the pass lowers it, and the built
    module gives onnxruntime's numbers."""
    from tvm_cosa.models import input_feed, tiny_cnn
    from tvm_cosa.relax import CoSAPass
    from tvm_cosa.relax.cache import ScheduleCache, cache_key, solve_quality
    from tvm_cosa.relax.extract import extract
    from tvm_cosa.relax.frontend import build, import_onnx, max_rel_error, run_onnxruntime, \
        run_tvm
    from tvm_cosa.scheduler import Objective
    from tvm_cosa.solvers import solver_version

    arch = ARCHS["simba"]
    model = tiny_cnn()
    mod = import_onnx(model)
    cache = ScheduleCache(tmp_path / "cache")
    rng = random.Random(0)
    planted = 0
    for op in extract(mod):
        if not op.supported:
            continue
        mapping = uneven_variant(op.problem, arch, rng)
        if mapping is None:
            continue
        key = cache_key(op.problem, arch, Objective().key() + ("uneven",), "highs",
                        solver_version("highs"))
        # planted as an optimal solve, so that the cache hands it out (cache.answers)
        cache.put(key, {"mapping": mapping.to_dict(), "evaluation": None,
                        "quality": solve_quality({"status": "optimal", "gap": 0.0}, None)})
        planted += 1
    assert planted >= 3
    cosa = CoSAPass(arch, solver="highs", cache=tmp_path / "cache", uneven=True, jobs=1)
    out = cosa(mod)
    uneven_records = [r for r in cosa.report.records if r.status == "scheduled"
                      and "<" in (r.schedule or "")]
    assert len(uneven_records) >= 3
    assert all(r.lowering == "generic" for r in uneven_records)
    feed = input_feed(model)
    err = max_rel_error(run_tvm(build(out, arch=cosa.arch), feed), run_onnxruntime(model, feed))
    assert err < 1e-4
