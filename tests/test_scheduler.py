"""schedule(): valid schedules on random layers and architectures, HiGHS and Gurobi agreeing,
solver options, quality against the cost model, and clear errors for impossible requests."""

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tvm_cosa.solvers as solvers
from tvm_cosa import (Architecture, Arithmetic, InfeasibleError, InputError, MemoryLevel, Problem,
                      SolverError, assert_valid, preset, schedule)
from tvm_cosa.scheduler import Objective, build_model

WORKLOADS = Path(__file__).parent / "data" / "workloads" / "resnet50"
TENSORS = ("Weights", "Inputs", "Outputs")
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def layers(draw):
    kind = draw(st.sampled_from(["conv", "grouped", "depthwise", "matmul", "batched"]))
    small = st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16])
    if kind == "matmul" or kind == "batched":
        return Problem.matmul(M=draw(small), N=draw(small), K=draw(small),
                              batch=draw(st.sampled_from([2, 3, 4])) if kind == "batched" else 1)
    groups = {"conv": 1, "grouped": draw(st.sampled_from([2, 4])),
              "depthwise": draw(st.sampled_from([4, 8]))}[kind]
    channels = st.sampled_from([1]) if kind == "depthwise" else small
    return Problem.conv2d(K=draw(channels), C=draw(channels), P=draw(small), Q=draw(small),
                          R=draw(st.sampled_from([1, 2, 3, 5])), S=draw(st.sampled_from([1, 3])),
                          stride=(draw(st.integers(1, 2)), draw(st.integers(1, 3))),
                          dilation=(draw(st.integers(1, 2)), 1), groups=groups)


@st.composite
def architectures(draw):
    """1 to 3 on-chip levels with random capacities, bypass and fanouts, above a MAC array."""
    n = draw(st.integers(1, 3))
    fanouts = [draw(st.sampled_from([1, 2, 4, 8])) for _ in range(n)]
    fanouts[-1] = 1  # the level under DRAM has one instance
    instances = [1] * n
    for i in range(n - 2, -1, -1):
        instances[i] = instances[i + 1] * fanouts[i + 1]
    levels = []
    for i in range(n):
        keeps = frozenset(t for t in TENSORS if draw(st.booleans()))
        entries = max(len(keeps), draw(st.sampled_from([1, 4, 16, 64, 512, 4096])))
        levels.append(MemoryLevel(f"L{i}", entries, instances=instances[i], keeps=keeps,
                                  block_size=draw(st.sampled_from([1, 4]))))
    levels.append(MemoryLevel("DRAM", None, technology="DRAM",
                              read_bandwidth=draw(st.sampled_from([None, 2.0, 16.0])),
                              write_bandwidth=8.0))
    return Architecture("random", Arithmetic(instances[0] * fanouts[0]), tuple(levels))


@PROPERTY
@given(layers(), architectures(), st.sampled_from([Objective(), Objective.cosa_original()]))
def test_every_schedule_is_valid_on_random_layers_and_architectures(problem, arch, objective):
    mapping = schedule(problem, arch, objective=objective, solver="highs", time_limit=math.inf)
    assert_valid(mapping, problem, arch)  # schedule() checks too; the test must not trust it
    assert mapping.info["status"] == "optimal"
    assert mapping.info["solver"] == "highs"
    for d, size in problem.sizes:
        assert mapping.factor_product(d) == size


@PROPERTY
@given(layers(), st.sampled_from(["simba", "gemmini"]))
def test_every_schedule_is_valid_on_the_presets(problem, arch_name):
    arch = preset(arch_name)
    mapping = schedule(problem, arch, solver="highs")
    assert_valid(mapping, problem, arch)
    gemmini_acc = arch.level_index("Accumulator") if arch_name == "gemmini" else None
    if gemmini_acc is not None:  # only the reduction dim on X, the output channel on Y
        lm = mapping.levels[gemmini_acc]
        assert set(lm.spatial_x) <= problem.dims_with_role("reduction")
        assert set(lm.spatial_y) <= problem.dims_with_role("output_channel")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(), architectures(), st.sampled_from([Objective(), Objective.cosa_original()]))
def test_highs_and_gurobi_reach_the_same_objective(problem, arch, objective):
    model = build_model(problem, arch, objective)
    assume(model.m.num_vars < 2000 and model.m.num_constraints < 2000)
    a = schedule(problem, arch, objective=objective, solver="highs", mip_gap=0,
                 time_limit=math.inf)
    b = schedule(problem, arch, objective=objective, solver="gurobi", mip_gap=0,
                 time_limit=math.inf)
    assert a.info["solver"] == "highs" and b.info["solver"] == "gurobi"
    assert a.info["objective"] == pytest.approx(b.info["objective"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("layer", ["_outputs_input.8", "_outputs_input.128", "_outputs_3356"])
def test_highs_and_gurobi_agree_on_resnet50_layers(layer):
    problem = Problem.from_yaml(WORKLOADS / f"{layer}.yaml")
    a = schedule(problem, preset("simba"), solver="highs", mip_gap=0,
                 time_limit=math.inf)
    b = schedule(problem, preset("simba"), solver="gurobi", mip_gap=0,
                 time_limit=math.inf)
    assert a.info["objective"] == pytest.approx(b.info["objective"], rel=1e-5)


def test_latency_objective_reaches_the_bound_where_the_original_cosa_is_67x_off():
    """ResNet-50 3x3 stride-2 7x7 512->512 on simba: the original CoSA re-reads all weights 7x
    from DRAM (1663028 cycles by Timeloop); the bandwidth-aware objective reads them once."""
    from tvm_cosa.cost_model import evaluate, lower_bound_cycles

    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.128.yaml"), preset("simba")
    mapping = schedule(problem, arch, solver="highs")
    ev = evaluate(mapping, problem, arch)
    assert ev.valid
    assert ev.cycles <= 1.01 * lower_bound_cycles(problem, arch)
    dram = ev.level("DRAM").tensors["Weights"]
    assert dram.reads == problem.full_size("Weights")


def test_model_estimates_match_the_cost_model_for_the_schedule_it_returns():
    """The objective's own cycle and energy estimates are close to what the cost model says."""
    from tvm_cosa.cost_model import evaluate

    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.11.yaml"), preset("simba")
    mapping = schedule(problem, arch, solver="highs")
    ev = evaluate(mapping, problem, arch)
    assert mapping.info["model_cycles"] == pytest.approx(ev.cycles, rel=0.02)
    assert mapping.info["model_energy_pJ"] == pytest.approx(ev.energy_pJ, rel=0.1)


def test_loop_order_is_chosen_at_every_level():
    """Orders come from the solver at every level above the registers: the innermost loop of
    a level with loops is irrelevant to the tensor the model made stationary there."""
    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.83.yaml"), preset("simba")
    model = build_model(problem, arch)
    mapping = schedule(problem, arch, solver="highs")
    sigma_levels = {int(n.split("[L")[1].split(",")[0]) for n in model.m.names
                    if n.startswith("sigma[")}
    assert sigma_levels == set(range(1, arch.num_levels))
    for i, lm in enumerate(mapping.levels):
        assert sorted(lm.order) == sorted(problem.dims)


@pytest.mark.parametrize("solver", ["highs", "gurobi"])
def test_time_limit_returns_the_best_schedule_found_with_its_status(solver):
    """With a time limit the search starts from a feasible schedule (every loop at DRAM), so
    even a limit too short to search returns a valid schedule marked "time_limit"."""
    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.2.yaml"), preset("simba")
    mapping = schedule(problem, arch, solver=solver, time_limit=1e-4)
    assert mapping.info["status"] == "time_limit"
    assert mapping.info["solver"] == solver
    assert_valid(mapping, problem, arch)
    best = schedule(problem, arch, solver=solver, time_limit=math.inf)
    assert best.info["status"] == "optimal"
    assert best.info["objective"] < mapping.info["objective"]


def test_time_limit_without_any_schedule_is_a_solver_error():
    """min_utilization leaves no trivial start: if nothing is found in time, say so."""
    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.2.yaml"), preset("simba")
    try:
        mapping = schedule(problem, arch, solver="highs", time_limit=1e-4, min_utilization=1.0)
    except SolverError as err:
        assert "found no schedule within the time limit of 0.0001 s" in str(err)
    else:  # HiGHS may find one before it looks at the clock
        assert mapping.utilized_macs() == 1024
        assert_valid(mapping, problem, arch)


def test_default_budget_runs_on_until_a_first_schedule(monkeypatch):
    """No time limit given: the solve gets DEFAULT_TIME_LIMIT and, with nothing found by then,
    goes on until it has a schedule (here a budget too short for anything)."""
    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.2.yaml"), preset("simba")
    model = build_model(problem, arch)
    stopped = solvers.solve(model.m, "highs", time_limit=1e-6)
    assert stopped.status == "time_limit" and not stopped.has_solution
    monkeypatch.setattr(solvers, "DEFAULT_TIME_LIMIT", 1e-6)
    result = solvers.solve(model.m, "highs")
    assert result.has_solution and result.status == "optimal"
    mapping = schedule(problem, arch, solver="highs")
    assert_valid(mapping, problem, arch)
    assert mapping.info["status"] == "optimal"


def test_auto_uses_gurobi_when_the_licence_accepts_the_model_and_says_so():
    problem = Problem.matmul(M=16, N=16, K=16)
    mapping = schedule(problem, preset("simba"), solver="auto")
    assert mapping.info["solver"] == "gurobi"
    assert "Gurobi" in mapping.info["solver_note"]


def test_auto_falls_back_to_highs_when_the_licence_is_too_small(monkeypatch):
    monkeypatch.setattr(solvers, "gurobi_size_limit", lambda: 10)
    problem = Problem.matmul(M=16, N=16, K=16)
    mapping = schedule(problem, preset("simba"), solver="auto")
    assert mapping.info["solver"] == "highs"
    assert "at most 10 variables" in mapping.info["solver_note"]
    with pytest.raises(SolverError, match="size-limited licence accepts at most 10"):
        schedule(problem, preset("simba"), solver="gurobi")


def test_unknown_solver_and_bad_options_are_refused():
    problem = Problem.matmul(M=4, N=4, K=4)
    with pytest.raises(SolverError, match="unknown solver 'cplex'"):
        schedule(problem, preset("simba"), solver="cplex")
    with pytest.raises(SolverError, match="time_limit"):
        schedule(problem, preset("simba"), solver="highs", time_limit=-1)
    with pytest.raises(SolverError, match="mip_gap"):
        schedule(problem, preset("simba"), solver="highs", mip_gap=2)
    with pytest.raises(InputError, match="objective weight"):
        Objective(latency=0, energy=0)
    with pytest.raises(InputError, match="Problem"):
        schedule("conv", preset("simba"))


def test_auto_falls_back_to_highs_when_gurobi_refuses_while_solving(monkeypatch):
    def refuse(*args):
        raise SolverError("Gurobi's licence refused the model")

    monkeypatch.setattr(solvers, "_solve_gurobi", refuse)
    mapping = schedule(Problem.matmul(M=8, N=8, K=8), preset("simba"), solver="auto")
    assert mapping.info["solver"] == "highs"
    assert "Gurobi refused" in mapping.info["solver_note"]
    with pytest.raises(SolverError, match="licence refused"):
        schedule(Problem.matmul(M=8, N=8, K=8), preset("simba"), solver="gurobi")


def test_objective_presets_are_hashable_keys():
    assert Objective.preset("cosa") == Objective.cosa_original()
    assert Objective.preset("default") == Objective()
    with pytest.raises(InputError, match="unknown objective 'fast'"):
        Objective.preset("fast")
    assert Objective().key() != Objective.cosa_original().key()
    assert hash(Objective()) == hash(Objective())
    assert Objective.cosa_original().compute == 10 and Objective.cosa_original().utilization == -0.1


# ---- impossible requests ---------------------------------------------------------------
def two_level(entries, keeps=TENSORS, instances=1, macs=1, top_entries=None):
    return Architecture("tiny", Arithmetic(macs), (
        MemoryLevel("Buffer", entries, instances=instances, keeps=frozenset(keeps)),
        MemoryLevel("Backing", top_entries, technology="SRAM" if top_entries else "DRAM")))


def test_zero_capacity_level_that_keeps_a_tensor():
    with pytest.raises(InfeasibleError, match="level Buffer keeps Weights but its capacity is 0"):
        schedule(Problem.matmul(M=4, N=4, K=4), two_level(0, keeps=["Weights"]))


def test_buffer_too_small_for_the_smallest_tiles():
    with pytest.raises(InfeasibleError,
                       match=r"level Buffer: the smallest tiles Weights 1 \+ Inputs 1 \+ "
                             r"Outputs 1 = 3 words exceed its capacity of 2 words"):
        schedule(Problem.matmul(M=4, N=4, K=4), two_level(2))


def test_bounded_outermost_level_too_small_for_the_whole_tensor():
    with pytest.raises(InfeasibleError,
                       match="the smallest tile of Inputs at level Backing is 64 words, "
                             "capacity 50"):
        schedule(Problem.matmul(M=8, N=4, K=8), two_level(16, top_entries=50))


def test_share_smaller_than_a_word():
    arch = two_level(8).with_shares({"Buffer": {"Inputs": 0.1}})
    with pytest.raises(InfeasibleError, match="smallest tile of Inputs at level Buffer is 1 words, "
                                              "capacity 0"):
        schedule(Problem.matmul(M=4, N=4, K=4), arch)


def test_dimension_that_cannot_be_factorized_onto_the_fanouts():
    """conv1 (C=3) on gemmini, whose X axis takes only the reduction dim: 48 of 256 MACs."""
    conv1 = Problem.conv2d(K=64, C=3, P=112, Q=112, R=7, S=7, stride=2, name="conv1")
    with pytest.raises(InfeasibleError, match=r"cannot be factorized onto the fanouts to use "
                                              r"256 of 256 MACs.*at most 48 can be used.*"
                                              r"Accumulator X 16 \(C\)"):
        schedule(conv1, preset("gemmini"), min_utilization=1.0)
    mapping = schedule(conv1, preset("gemmini"), min_utilization=48 / 256)
    assert mapping.utilized_macs() == 48


def test_outermost_level_must_keep_every_tensor():
    arch = two_level(64).with_bypass({"Backing": ["Weights", "Outputs"]})
    with pytest.raises(InputError, match="outermost level Backing bypasses Inputs"):
        schedule(Problem.matmul(M=4, N=4, K=4), arch)


def test_uneven_mapping_spans_fewer_loops():
    """tile_levels (CoSA's Z): the GlobalBuffer's Inputs tile spans only the temporal loops up
    to the InputBuffer (and, as every tile, the fan-out below the GlobalBuffer)."""
    problem, arch = Problem.from_yaml(WORKLOADS / "_outputs_input.46.yaml"), preset("simba")
    gb, ib = arch.level_index("GlobalBuffer"), arch.level_index("InputBuffer")
    mapping = schedule(problem, arch, solver="highs", tile_levels={("Inputs", gb): ib})
    assert mapping.tile_levels == {("Inputs", gb): ib}
    inner, fanout = mapping.tile_extents("Inputs", ib), mapping.levels[gb].spatial
    assert {d: mapping.tile_extents("Inputs", gb).get(d, 1) for d in problem.dims} == \
        {d: inner.get(d, 1) * fanout.get(d, 1) for d in problem.dims}
    assert_valid(mapping, problem, arch)
    with pytest.raises(InputError, match="outer level's tile must contain the inner one"):
        schedule(problem, arch, tile_levels={("Inputs", ib): gb, ("Inputs", gb): 0})


@PROPERTY
@given(layers(), st.data())
def test_uneven_schedules_are_valid(problem, data):
    """Random uneven tile levels (CoSA's Z) on simba: each kept tile spans the loops up to a
    level at or below its own (and above the inner kept tile's); every schedule is valid."""
    arch = preset("simba")
    tile_levels = {}
    for t in problem.tensor_names:
        chain = [i for i, lv in enumerate(arch.levels) if t in lv.keeps][:-1]
        floor = -1
        for i in chain:
            j = data.draw(st.integers(max(floor, 0), i))
            floor = j
            if j != i:
                tile_levels[(t, i)] = j
    mapping = schedule(problem, arch, solver="highs", tile_levels=tile_levels)
    assert mapping.tile_levels == tile_levels
    assert_valid(mapping, problem, arch)


def test_solver_versions_name_the_solver_for_cache_keys():
    assert solvers.solver_version("highs").startswith("highs 1.")
    assert solvers.solver_version("gurobi").startswith("gurobi ")
    assert "highs" in solvers.solver_version("auto")
    with pytest.raises(SolverError, match="unknown solver"):
        solvers.solver_version("cbc")
