"""cosa(prob, arch, A, B, part_ratios, global_buf_idx, Z): the original CoSA's interface, with
every argument driving the model."""

import math
from pathlib import Path

import pytest

from tvm_cosa import (InfeasibleError, InputError, LevelMapping, Mapping, Problem, assert_valid,
                      cosa, load_architecture)
from tvm_cosa.problem import prime_factors
from tvm_cosa.scheduler import Objective, build_model, problem_with_relevance
from tvm_cosa.solvers import solve

DATA = Path(__file__).parent / "data"
LAYER = DATA / "workloads" / "resnet50" / "_outputs_input.83.yaml"
ARCH = DATA / "arch" / "simba.yaml"

# The original's constants (cosa_constants.py) and the part ratios of its run_timeloop()
A = [[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]]
B = [[1, 0, 1, 0, 0, 1], [0, 0, 0, 1, 1, 1], [0, 1, 0, 0, 1, 1]]
PART_RATIOS = [[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0.25, 0.75], [0.33, 0.33, 0.33]]
GB, IB, REGS = 4, 3, 0


def simba():
    return load_architecture(ARCH)


def run(**changes):
    args = dict(prob=LAYER, arch=ARCH, A=A, B=B, part_ratios=PART_RATIOS, global_buf_idx=GB,
                Z=None)
    args.update(changes)
    return cosa(args.pop("prob"), args.pop("arch"), args.pop("A"), args.pop("B"),
                args.pop("part_ratios"), args.pop("global_buf_idx"), args.pop("Z"),
                solver="highs", return_mapping=True)


def test_returns_the_original_formats():
    factor_config, spatial_config, perm_config, run_time, mapping = run()
    problem = Problem.from_yaml(LAYER)
    assert [len(row) for row in factor_config] == [
        len(prime_factors(n) or [1]) for _, n in problem.sizes]
    assert factor_config[problem.dims.index("N")] == [5]  # size 1: the outermost level
    assert spatial_config[problem.dims.index("N")] == [0]
    assert sorted(perm_config) == list(range(7))
    assert run_time >= 0
    # the configs describe exactly the returned mapping
    rebuilt = [LevelMapping() for _ in range(6)]
    for d, levels, kinds in zip(problem.dims, factor_config, spatial_config):
        for p, level, kind in zip(prime_factors(problem.size[d]), levels, kinds):
            target = rebuilt[level].spatial_x if kind else rebuilt[level].temporal
            target[d] = target.get(d, 1) * p
    for got, want in zip(rebuilt, mapping.levels):
        assert got.temporal == want.temporal and got.spatial_x == want.spatial_x
    order = mapping.levels[GB].full_order(problem.dims)
    assert [order.index(d) for d in problem.dims] == perm_config
    assert_valid(mapping, problem, simba())


def test_prob_and_arch_may_be_paths_dicts_objects_or_typed():
    class OriginalProb:  # the original's Prob: a .prob dict read from .path
        def __init__(self, path):
            import yaml
            self.path = Path(path)
            self.prob = yaml.safe_load(open(path))["problem"]

    class OriginalArch:
        path = ARCH

    import yaml
    reference = run()[0]
    for prob in (Problem.from_yaml(LAYER), str(LAYER), yaml.safe_load(open(LAYER)),
                 OriginalProb(LAYER)):
        for arch in (simba(), OriginalArch()):
            factor_config, *_ = run(prob=prob, arch=arch)
            assert sorted(map(sorted, factor_config)) == sorted(map(sorted, reference))
    with pytest.raises(InputError, match="prob must be"):
        run(prob=42)


def fixed_model_status(mapping, keeps=None, tile_levels=None, arch=None):
    """Solve the model with the factors pinned: can the solver pick this mapping?"""
    problem = Problem.from_yaml(LAYER)
    model = build_model(problem, arch or simba(), Objective.cosa_original(), keeps=keeps,
                        tile_levels=tile_levels, global_buffer=GB)
    model.fix(mapping)
    return solve(model.m, "highs").status


def dram_heavy_mapping(moves=None):
    """Every factor temporal at DRAM except the ones moved: {level: {dim: factor}}."""
    problem = Problem.from_yaml(LAYER)
    levels = [LevelMapping() for _ in range(6)]
    rest = dict(problem.size)
    for level, factors in (moves or {}).items():
        for d, f in factors.items():
            levels[level].temporal[d] = f
            rest[d] //= f
    levels[5].temporal = {d: n for d, n in rest.items() if n > 1}
    return Mapping(levels)


def keeps_of(b):
    return {i: frozenset(t for k, t in enumerate(("Weights", "Inputs", "Outputs")) if b[k][i])
            for i in range(6)}


def test_B_changes_what_the_solver_may_do():
    """A C loop in the 1-entry Registers makes a Weights tile of 2: impossible while B keeps
    Weights there, allowed once B bypasses them (and the result follows B's keeps)."""
    c_in_registers = dram_heavy_mapping({REGS: {"C": 2}})
    assert fixed_model_status(c_in_registers, keeps=keeps_of(B)) == "infeasible"
    b2 = [row[:] for row in B]
    b2[0][REGS] = 0
    assert fixed_model_status(c_in_registers, keeps=keeps_of(b2)) == "optimal"
    mapping = run(B=b2)[-1]
    assert all(lm.keeps == keeps_of(b2)[i] for i, lm in enumerate(mapping.levels))


def test_Z_uneven_mapping_changes_what_the_solver_may_do():
    """An Inputs tile of the whole 16 x 16 x 256 input at the GlobalBuffer is too big (its
    share 0.25 x 65536 words); with Z spanning only the InputBuffer's loops it fits."""
    z = [[[int(j <= i) if b else 0 for j in range(6)] for i, b in enumerate(row)] for row in B]
    assert run(Z=z)[-1].tile_levels == {}  # Z derived from B: even mapping
    big = dram_heavy_mapping({GB: {"P": 14, "Q": 14, "C": 256}})
    arch = simba().with_shares({"GlobalBuffer": {"Inputs": 0.25, "Outputs": 0.75}})
    assert fixed_model_status(big, keeps=keeps_of(B), arch=arch) == "infeasible"
    assert fixed_model_status(big, keeps=keeps_of(B), tile_levels={("Inputs", GB): IB},
                              arch=arch) == "optimal"
    z[1][GB] = [1, 1, 1, 1, 0, 0]
    mapping = run(Z=z)[-1]
    assert mapping.tile_levels == {("Inputs", GB): IB}
    problem = Problem.from_yaml(LAYER)
    # The GlobalBuffer's tile spans the InputBuffer's loops, and (as every tile) the fan-out
    # below the GlobalBuffer (tvm_cosa.uneven).
    inner, fanout = mapping.tile_extents("Inputs", IB), mapping.levels[GB].spatial
    assert {d: mapping.tile_extents("Inputs", GB).get(d, 1) for d in problem.dims} == \
        {d: inner.get(d, 1) * fanout.get(d, 1) for d in problem.dims}


def test_part_ratios_bound_each_tensors_share():
    _, _, _, _, mapping = run()
    problem = Problem.from_yaml(LAYER)
    assert mapping.tile_size(problem, "Inputs", GB) <= 0.25 * 65536
    assert mapping.tile_size(problem, "Outputs", GB) <= 0.75 * 65536
    ratios = [row[:] for row in PART_RATIOS]
    ratios[GB] = [0, 1e-5, 0.5]
    with pytest.raises(InfeasibleError, match="smallest tile of Inputs at level GlobalBuffer is 1 "
                                              "words, capacity 0"):
        run(part_ratios=ratios)


def test_global_buf_idx_picks_the_level_whose_order_is_optimised_and_returned():
    problem = Problem.from_yaml(LAYER)
    for g in (GB, IB):
        model = build_model(problem, simba(), Objective.cosa_original(), keeps=keeps_of(B),
                            global_buffer=g)
        levels = {n.split("[L")[1].split(",")[0] for n in model.m.names if n.startswith("sigma[")}
        assert levels == {str(g)}
        _, _, perm, _, mapping = run(global_buf_idx=g)
        order = mapping.levels[g].full_order(problem.dims)
        assert perm == [order.index(d) for d in problem.dims]
    with pytest.raises(InputError, match="global_buf_idx must be a level index 0..5"):
        run(global_buf_idx=9)


def test_A_with_the_original_window_convention_is_the_operator_itself():
    problem = Problem.from_yaml(LAYER)
    assert problem_with_relevance(problem, A) is problem
    true_relation = [row[:] for row in A]
    true_relation[0][1] = true_relation[1][1] = 1  # R, S index Inputs through the window
    assert problem_with_relevance(problem, true_relation) is problem


def test_A_drives_the_tensor_relations():
    """Saying K indexes Inputs makes a different operator: Inputs tiles grow with K."""
    a2 = [row[:] for row in A]
    a2[5][1] = 1
    problem = problem_with_relevance(Problem.from_yaml(LAYER), a2)
    assert "K" in problem.tensor("Inputs").dims
    assert problem.full_size("Inputs") == 256 * 16 * 16 * 256
    *_, mapping = run(A=a2)
    assert_valid(mapping, problem, simba().with_shares(
        {"GlobalBuffer": {"Inputs": 0.25, "Outputs": 0.75}}))


@pytest.mark.parametrize("change, message", [
    (dict(A=A[:6]), "A must be 7 x 3"),
    (dict(A=[[2, 0, 0]] + A[1:]), "only 0 and 1"),
    (dict(B=[row[:5] for row in B]), "B must be 3 x 6"),
    (dict(part_ratios=PART_RATIOS[:5]), "part_ratios must be 6 x 3"),
    (dict(part_ratios=[[0, 0, 0]] + PART_RATIOS[1:]), r"part_ratios\[0\]\[0\] = 0: level "
                                                       "Registers keeps Weights"),
    (dict(Z=[[[1, 0, 1, 0, 0, 0]] * 6] * 3), "not a prefix of ones"),
    (dict(Z=[[[1] * 6] * 6] * 3), "B bypasses"),
    (dict(Z=[[[1] * 6] * 6]), "one 6 x 6 matrix per tensor"),
])
def test_malformed_arguments_are_named(change, message):
    with pytest.raises(InputError, match=message):
        run(**change)


def test_objective_can_be_the_latency_energy_one():
    factor_config, _, _, _, mapping = cosa(LAYER, ARCH, A, B, PART_RATIOS, GB,
                                           objective=Objective(), solver="highs",
                                           return_mapping=True)
    assert mapping.info["objective_name"] == Objective().name
    assert math.isclose(mapping.info["model_cycles"], mapping.info["lower_bound_cycles"],
                        rel_tol=0.02)
