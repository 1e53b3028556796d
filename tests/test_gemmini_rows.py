"""Gemmini's scratchpad and accumulator are row-addressed: CoSA counts their capacity in rows
(`MemoryLevel.row_dims`), the validity checker too, and both agree with the lowering's plan."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gemmini_util import conv_module, conv_ref, random_gemmini_mapping
from tvm_cosa import Problem, check_mapping
from tvm_cosa.formulation import Objective, ScheduleModel
from tvm_cosa.scheduler import schedule
from tvm_cosa.solvers import solve
from tvm_cosa.target.gemmini.config import GemminiConfig
from tvm_cosa.target.gemmini.plan import UnsupportedMapping, make_plan
from tvm_cosa.validity import tile_rows

tvm = pytest.importorskip("tvm")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTIONS = dict(cache=False, jobs=1, check="builtin")


def words_only(arch):
    """The architecture as CoSA modelled it before: capacities in words."""
    return dataclasses.replace(arch, levels=tuple(dataclasses.replace(lv, row_dims=())
                                                  for lv in arch.levels))


def test_the_gemmini_memories_are_row_addressed():
    cfg = GemminiConfig(dim=8, scratchpad_kib=16, accumulator_kib=4, dtype="float32")
    arch = cfg.architecture()
    spad = arch.levels[arch.level_index("Scratchpad")]
    acc = arch.levels[arch.level_index("Accumulator")]
    assert (spad.row_capacity, spad.block_size) == (cfg.spad_rows, cfg.dim)
    assert (acc.row_capacity, acc.block_size) == (cfg.acc_rows, cfg.dim)
    conv = Problem.conv2d(C=16, K=24, P=5, Q=5, R=3, S=3)
    assert spad.row_dims_of(conv, "Inputs") == {"C"} and spad.row_dims_of(conv, "Weights") == {"K"}
    assert acc.row_dims_of(conv, "Outputs") == {"K"}
    assert all(lv.row_capacity is None for lv in (arch.levels[0], arch.levels[-1]))


def test_a_layer_too_big_in_rows_now_runs_on_the_array(tmp_path):
    """ResNet-50's 1x1 1024->512 7x7 (float32): scheduled in words, its tiles need more rows than
    the scratchpad has (the layer fell back to the CPU); in rows it runs on the array."""
    from tvm_cosa.relax import CoSAPass
    from tvm_cosa.target.gemmini import flow

    cfg = GemminiConfig(dtype="float32")
    arch = cfg.architecture()
    xs, ws = (1, 7, 7, 1024), (1, 1, 1024, 512)
    problem = Problem.conv2d(C=1024, K=512, P=7, Q=7)
    old = schedule(problem, words_only(arch))
    with pytest.raises(UnsupportedMapping, match="scratchpad rows"):
        make_plan(problem, old, arch, cfg)
    assert [v.kind for v in check_mapping(old, problem, arch)] == ["rows"]

    cosa = CoSAPass(cfg, **OPTIONS)
    mod = cosa(conv_module(xs, ws, dtype="float32"))
    (rec,) = cosa.report.records
    assert rec.lowering == "gemmini", rec.reason
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws))
    (got,) = flow.load(mod, cfg)({"x": x, "w": w})
    ref = conv_ref(x, w, (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


SMALL = GemminiConfig(dim=8, scratchpad_kib=4, accumulator_kib=2)
ROOMY = GemminiConfig(dim=8, scratchpad_kib=1024, accumulator_kib=1024)
conv_shapes = st.tuples(st.sampled_from([3, 8, 12, 16, 24, 40]),  # C
                        st.sampled_from([4, 8, 16, 20, 32]),  # K
                        st.integers(1, 12), st.integers(1, 12),  # P, Q
                        st.sampled_from([1, 3]))  # R = S


def draw_roomy_mapping(shape, seed):
    """A conv of `shape` and a random mapping drawn where memory is plentiful (or None)."""
    c, k, p, q, r = shape
    problem = Problem.conv2d(C=c, K=k, P=p, Q=q, R=r, S=r)
    return problem, random_gemmini_mapping(problem, ROOMY.architecture(), seed, dim=SMALL.dim)


@settings(max_examples=25, **SETTINGS)
@given(shape=conv_shapes, seed=st.integers(0, 10 ** 6))
def test_the_checker_counts_the_rows_the_plan_lays_out(shape, seed):
    """Random mappings (drawn where memory is plentiful) on a small configuration: the checker
    rejects exactly those whose rows the plan cannot place, and counts the same rows."""
    problem, mapping = draw_roomy_mapping(shape, seed)
    if mapping is None:
        return
    arch = SMALL.architecture()
    plan = make_plan(problem, mapping, ROOMY.architecture(), ROOMY)
    spad, acc = arch.level_index("Scratchpad"), arch.level_index("Accumulator")
    for tensor, level in (("Inputs", spad), ("Weights", spad), ("Outputs", acc)):
        assert tile_rows(mapping, problem, arch.levels[level], level, tensor)[0] == \
            plan.tiles[tensor].rows
    fits = plan.spad_rows <= SMALL.spad_rows and plan.acc_rows <= SMALL.acc_rows
    row_violations = [v for v in check_mapping(mapping, problem, arch) if v.kind == "rows"]
    assert (not row_violations) == fits


def pinned_status(mapping, problem, arch):
    """The solver's status for CoSA's model with every factor pinned to `mapping`'s."""
    model = ScheduleModel(problem, arch, Objective())
    model.fix(mapping)
    return solve(model.m, "highs").status


@settings(max_examples=25, **SETTINGS)
@given(shape=conv_shapes, seed=st.integers(0, 10 ** 6))
def test_cosa_counts_rows_like_the_checker(shape, seed):
    """CoSA's model, pinned to a random mapping: mappings whose rows overflow are infeasible,
    and whatever the model accepts the checker accepts (rows are words / an integer factor, so
    the log-domain count is exact)."""
    problem, mapping = draw_roomy_mapping(shape, seed)
    if mapping is None:
        return
    arch = SMALL.architecture()
    status = pinned_status(mapping, problem, arch)
    violations = check_mapping(mapping, problem, arch)
    if any(v.kind == "rows" for v in violations):
        assert status == "infeasible"
    if status == "optimal":
        assert not violations


def test_the_old_schedule_is_infeasible_in_rows():
    cfg = GemminiConfig(dtype="float32")
    problem = Problem.conv2d(C=1024, K=512, P=7, Q=7)
    arch = cfg.architecture()
    old = schedule(problem, words_only(arch))
    assert pinned_status(old, problem, words_only(arch)) == "optimal"
    assert pinned_status(old, problem, arch) == "infeasible"


def test_row_dims_round_trip_the_short_format_and_bad_ones_are_named():
    from tvm_cosa import InputError, preset
    from tvm_cosa.architecture_yaml import from_short, to_short_dict

    data = to_short_dict(preset("gemmini"))
    assert data["levels"][2]["row_dims"] == {"Inputs": "reduction", "Weights": "output_channel"}
    assert from_short(data).levels == preset("gemmini").levels
    data["levels"][2]["row_dims"] = {"Outputs": "output_channel"}
    with pytest.raises(InputError, match="row_dims.*Outputs.*does not keep"):
        from_short(data)
