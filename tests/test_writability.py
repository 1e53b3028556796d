"""Every schedule the scheduler returns is one Timeloop can express (issue 10, item 1).

A Timeloop map gives each dimension one spatial factor per level, on X or on Y (the `split` of
its permutation); the validity checker rejects the rest, and the scheduler never returns it,
on random architectures in Timeloop's own formats (`tvm_cosa.timeloop.fuzz`)."""

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_cosa import InfeasibleError, InputError, Problem, load_architecture
from tvm_cosa.architecture_yaml import load_architecture as load_arch
from tvm_cosa.mapping import LevelMapping, Mapping
from tvm_cosa.scheduler import schedule
from tvm_cosa.timeloop import mapping_yaml, read_mapping
from tvm_cosa.timeloop.fuzz import random_arch_files, random_layer
from tvm_cosa.validity import check_mapping

REFERENCE = Path(__file__).parent / "data" / "timeloop-reference"


def _case(seed, fmt=None):
    rng = random.Random(seed)
    files = random_arch_files(rng, fmt)
    return load_arch(files.arch, files.mapspace, name=f"fuzz{seed}"), random_layer(rng)



@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6))
def test_schedules_on_random_architectures_are_valid_and_writable(seed):
    arch, problem = _case(seed)
    try:
        mapping = schedule(problem, arch, solver="highs", time_limit=20)
    except InfeasibleError:
        return  # the smallest tiles do not fit: nothing to write
    assert check_mapping(mapping, problem, arch) == []
    for lv in mapping.levels:
        assert not {d for d, f in lv.spatial_x.items() if f > 1} & \
            {d for d, f in lv.spatial_y.items() if f > 1}
    text = mapping_yaml(mapping, problem, arch)
    # And the map reads back as the same schedule.
    back = read_mapping(__import__("yaml").safe_load(text), problem, arch)
    for a, b in zip(mapping.levels, back.levels):
        assert (a.temporal, a.spatial) == (b.temporal, b.spatial)


_ARRAY_4X4 = {"arch": {"arithmetic": {"instances": 16, "meshX": 4, "word-bits": 8},
                      "storage": [{"name": "RF", "entries": 64, "instances": 16, "meshX": 4,
                                   "word-bits": 8},
                                  {"name": "DRAM", "technology": "DRAM", "instances": 1,
                                   "word-bits": 8}]}}


def test_one_axis_per_dimension_is_a_constraint():
    """N=16 on a 4 x 4 array: without the rule the best schedule may put 4 on X and 4 on Y;
    with it, N takes one axis and M the other."""
    arch = load_architecture(_ARRAY_4X4)
    problem = Problem.matmul(M=4, N=16, K=1)
    mapping = schedule(problem, arch, solver="highs")
    assert check_mapping(mapping, problem, arch) == []
    spatial = mapping.levels[1]
    assert spatial.spatial_product() == 16
    assert not set(spatial.spatial_x) & set(spatial.spatial_y)
    mapping_yaml(mapping, problem, arch)


def test_checker_rejects_a_dimension_on_both_axes():
    arch = load_architecture(_ARRAY_4X4)
    problem = Problem.matmul(M=4, N=16, K=1)
    mapping = Mapping([LevelMapping(), LevelMapping(temporal={"M": 4}, spatial_x={"N": 4},
                                                    spatial_y={"N": 4})])
    problems = check_mapping(mapping, problem, arch)
    assert [v.kind for v in problems] == ["split"], problems
    assert [v.kind for v in check_mapping(mapping, problem, arch, timeloop_rules=True)] == \
        ["split"]
    with pytest.raises(InputError, match="both X and Y"):
        mapping_yaml(mapping, problem, arch)
    mapping.levels[1].spatial_y = {"M": 4}
    mapping.levels[1].temporal = {"N": 4}
    assert check_mapping(mapping, problem, arch) == []


@pytest.mark.parametrize("case", sorted(p.name for p in REFERENCE.iterdir()
                                        if p.is_dir() and "invalid" in p.name))
def test_checker_rejects_what_timeloop_rejects(case):
    """The reference runs Timeloop rejected: the checker's Timeloop rules reject them too."""
    folder = REFERENCE / case
    problem = Problem.from_yaml(folder / "prob.yaml")
    arch = load_architecture(folder / "arch.yaml")
    mapping = read_mapping(folder / "map.yaml", problem, arch)
    assert json.loads((folder / "summary.json").read_text())["valid"] is False
    assert check_mapping(mapping, problem, arch, timeloop_rules=True) != []
