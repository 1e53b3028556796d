"""The exact-model polish (`tvm_cosa.polish`): never worse by the cost model (= timeloop-model),
always valid and writable, and it wins back a case Timeloop's own mapper had won."""

import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_cosa import LevelMapping, Mapping, Problem, load_architecture, preset, schedule
from tvm_cosa.cost_model import evaluate
from tvm_cosa.errors import InfeasibleError
from tvm_cosa.formulation import Objective
from tvm_cosa.polish import Score, polish, score_function
from tvm_cosa.timeloop import read_mapping
from tvm_cosa.timeloop.fuzz import random_case
from tvm_cosa.timeloop.mapping_io import mapping_yaml
from tvm_cosa.validity import check_mapping

MAPPER_WINS = Path(__file__).parent / "data" / "mapper_wins"


@pytest.mark.parametrize("case, objective, metric, theirs", [
    ("random5007_latency", "latency", "cycles", 855),
    ("random5038_energy", "energy", "energy_pJ", 6082705.93)])
def test_wins_back_the_cases_the_mapper_won(case, objective, metric, theirs):
    """timeloop-mapper's best map of each case (timeloop-model's value: `theirs`) against
    CoSA's: the MILP alone was behind; with the polish CoSA is not."""
    folder = MAPPER_WINS / case
    arch = load_architecture(folder / "arch.yaml", folder / "mapper.yaml")
    problem = Problem.from_yaml(folder / "prob.yaml")
    mapper = evaluate(read_mapping(folder / "timeloop-mapper.map.yaml", problem, arch),
                      problem, arch)
    assert getattr(mapper, metric) == pytest.approx(theirs, rel=1e-9)
    objective = Objective.preset(objective)
    milp_only = schedule(problem, arch, objective=objective, solver="highs", polish=False)
    ours = schedule(problem, arch, objective=objective, solver="highs")
    assert check_mapping(ours, problem, arch) == []
    ev = evaluate(ours, problem, arch)
    assert getattr(ev, metric) <= getattr(mapper, metric) * (1 + 1e-9)
    assert getattr(mapper, metric) < getattr(evaluate(milp_only, problem, arch), metric)
    report = ours.info["polish"]
    assert report["moves"] >= 1 and report["converged"]
    assert (report["cycles"], report["energy_pJ"]) == (ev.cycles, ev.energy_pJ)
    assert "polish" not in milp_only.info


def test_scores_follow_the_objective():
    latency = score_function(Objective.latency_only(), 100.0, 1000.0)
    energy = score_function(Objective.energy_only(), 100.0, 1000.0)
    mixed = score_function(Objective(latency=1.0, energy=0.5), 100.0, 1000.0)

    class Ev:
        cycles, energy_pJ = 200.0, 3000.0

    assert latency(Ev) == Score(200.0, 3000.0)
    assert energy(Ev) == Score(3000.0, 200.0)
    assert mixed(Ev).primary == pytest.approx(200 / 100 + 0.5 * 3000 / 1000)
    assert Score(1.0, 5.0).better_than(Score(1.0 + 1e-6, 1.0))  # the objective comes first
    assert Score(1.0, 4.0).better_than(Score(1.0, 5.0))  # then the other metric
    assert not Score(1.0, 5.0).better_than(Score(1.0, 5.0))


def test_improves_a_poor_start_and_keeps_min_utilization():
    """From every loop at the outermost level (valid, slow), the polish finds a faster schedule;
    with min_utilization it never drops below that share of the MACs."""
    problem, arch = Problem.conv2d(K=16, C=8, P=7, Q=7, R=3, S=3), preset("simba")
    levels = [LevelMapping() for _ in arch.levels]
    levels[-1] = LevelMapping(temporal=dict(problem.sizes))
    start = Mapping(levels)
    assert check_mapping(start, problem, arch) == []
    score = score_function(Objective.latency_only(), 1.0, 1.0)
    best, ev, report = polish(start, problem, arch, score, budget=400)
    assert check_mapping(best, problem, arch) == []
    assert ev.cycles < evaluate(start, problem, arch).cycles == problem.macs
    assert report["evaluations"] <= 400 and report["moves"] >= 1
    _, ev_min, _ = polish(start, problem, arch, score, budget=400, min_utilization=0.5)
    # the start uses one MAC: no move reaches half the array, so nothing may change
    assert ev_min.cycles == problem.macs


def test_cosa_objective_is_not_polished():
    problem, arch = Problem.conv2d(K=16, C=8, P=7, Q=7, R=3, S=3), preset("simba")
    mapping = schedule(problem, arch, objective=Objective.cosa_original(), solver="highs")
    assert "polish" not in mapping.info


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10 ** 6), objective=st.sampled_from(["latency", "energy", "default"]))
def test_never_worse_always_valid_and_writable(seed, objective):
    """Random Timeloop architectures and layers (`tvm_cosa.timeloop.fuzz`)."""
    files, problem = random_case(seed, varied=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = load_architecture(files.arch, files.mapspace, name=f"random{seed}")
    obj = Objective.preset(objective)
    try:
        plain = schedule(problem, arch, objective=obj, solver="highs", polish=False)
    except InfeasibleError:
        return
    polished = schedule(problem, arch, objective=obj, solver="highs")
    assert check_mapping(polished, problem, arch) == []
    mapping_yaml(polished, problem, arch)  # a Timeloop map
    info = polished.info
    score = score_function(obj, info["lower_bound_cycles"], _energy_reference(problem, arch, obj))
    before, after = evaluate(plain, problem, arch), evaluate(polished, problem, arch)
    assert after.valid
    assert not score(before).better_than(score(after))
    assert info["polish"]["cycles_before"] == before.cycles
    assert info["polish"]["cycles"] == after.cycles


def _energy_reference(problem, arch, objective):
    from tvm_cosa.scheduler import build_model

    return build_model(problem, arch, objective).energy_ref
