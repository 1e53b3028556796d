"""schedule(..., uneven=True): the MILP picks each tensor's tile boundaries (CoSA's Z as a
decision). The even schedule is a special case, so it keeps its objective value in the uneven
model, the uneven optimum is never worse, and what comes back passes the checker."""

from pathlib import Path

import pytest

from tvm_cosa import Mapping, Problem, check_mapping, preset, schedule
from tvm_cosa.cost_model import evaluate
from tvm_cosa.scheduler import build_model, solve_checked
from tvm_cosa.solvers import solve
from uneven_cases import gemmini_matmul_64

WORKLOADS = Path(__file__).parent / "data" / "workloads" / "resnet50"
CASES = [("gemmini", "_outputs_input.125"), ("gemmini", "_outputs_input.128"),
         ("simba", "_outputs_3356")]


def layer(name):
    return Problem.from_yaml(WORKLOADS / f"{name}.yaml")


@pytest.mark.parametrize("arch_name,name", CASES)
def test_even_is_a_special_case_of_the_uneven_model(arch_name, name):
    arch, problem = preset(arch_name), layer(name)
    even = schedule(problem, arch, solver="highs")
    objective = even.info["objective"]
    # the even schedule's factors and orders pinned, boundaries free: no worse than even
    refine = build_model(problem, arch, uneven=True)
    refine.fix(even)
    refined = solve_checked(refine, problem, arch, solver="highs")
    assert refined.info["objective"] <= objective + 1e-6 * abs(objective)
    # the joint model's proven bound never exceeds the even optimum
    joint = build_model(problem, arch, uneven=True)
    result = solve(joint.m, "highs", time_limit=20)
    assert result.bound <= objective + 1e-6 * abs(objective)
    assert joint.m.num_vars > build_model(problem, arch).m.num_vars  # Z is in the model


@pytest.mark.parametrize("arch_name,name", CASES)
def test_uneven_schedule_is_valid_and_never_worse(arch_name, name):
    arch, problem = preset(arch_name), layer(name)
    mapping = schedule(problem, arch, solver="highs", uneven=True, time_limit=10)
    assert check_mapping(mapping, problem, arch) == []
    assert evaluate(mapping, problem, arch).valid
    info = mapping.info["uneven"]
    assert info["chosen"] in ("even", "boundaries", "joint")
    assert mapping.info["objective"] <= info["even_objective"]
    if info["chosen"] == "even":
        assert mapping.tile_levels == {}


def test_z_decision_picks_the_boundary_that_saves_refills():
    """Gemmini, factors pinned: the scratchpad's outer K loop drains and reloads every output
    tile of the accumulator 4 times (even). Spanning the scratchpad's loops with the Outputs
    tile (it fits: 64 x 64 words) removes that; the MILP finds it, and the built-in model
    agrees it is faster and cheaper."""
    problem, arch, levels, acc, spad = gemmini_matmul_64()
    pinned = Mapping(levels)
    even_model, uneven_model = build_model(problem, arch), build_model(problem, arch, uneven=True)
    even_model.fix(pinned)
    uneven_model.fix(pinned)
    even = solve_checked(even_model, problem, arch, solver="highs")
    uneven = solve_checked(uneven_model, problem, arch, solver="highs")
    assert uneven.tile_levels.get(("Outputs", acc)) == spad
    assert uneven.info["objective"] < 0.5 * even.info["objective"]
    a, b = evaluate(even, problem, arch), evaluate(uneven, problem, arch)
    assert b.cycles < a.cycles and b.energy_pJ < a.energy_pJ
    assert check_mapping(uneven, problem, arch) == []


def test_fixed_boundaries_stay_fixed_with_uneven():
    problem, arch = layer("_outputs_3356"), preset("gemmini")
    spad = arch.level_index("Scratchpad")
    mapping = schedule(problem, arch, solver="highs", uneven=True,
                       tile_levels={("Inputs", spad): spad - 1})
    assert mapping.tile_levels.get(("Inputs", spad)) == spad - 1
    assert check_mapping(mapping, problem, arch) == []
