"""Cross-check with ZigZag (skipped without `pip install zigzag-dse six`): on real ResNet-50
layers, even and uneven mappings, on Gemmini-like and Eyeriss-like hardware, every count both
models define the same way is equal (docs/zigzag.md lists the differences of definition)."""

import logging
import random
from pathlib import Path

import pytest

pytest.importorskip("zigzag")

from tvm_cosa import Mapping, Problem, check_mapping, load_architecture, preset, schedule  # noqa
from tvm_cosa.zigzag import compare, temporal_mapping_data  # noqa: E402
from tvm_cosa.uneven import single_moves  # noqa: E402

DATA = Path(__file__).parent / "data"
EYERISS_KEEPS = {"psum_spad": ["Outputs"], "weights_spad": ["Weights"],
                 "ifmap_spad": ["Inputs"], "DummyBuffer": [], "shared_glb": ["Inputs", "Outputs"]}
ARCHS = {"gemmini": preset("gemmini"),
         "eyeriss": load_architecture(DATA / "arch" / "eyeriss_like.tree.yaml")
         .with_bypass(EYERISS_KEEPS)}
# 1x1, 3x3 stride 2 (window and stride: input counts defined differently), 1x1 stride 2
LAYERS = ["_outputs_input.11", "_outputs_input.128", "_outputs_input.132"]


@pytest.fixture(autouse=True)
def quiet_zigzag():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def layer(name):
    return Problem.from_yaml(DATA / "workloads" / "resnet50" / f"{name}.yaml")


@pytest.mark.parametrize("arch_name", sorted(ARCHS))
@pytest.mark.parametrize("name", LAYERS)
def test_counts_defined_alike_agree_on_even_and_uneven_mappings(arch_name, name):
    arch, problem = ARCHS[arch_name], layer(name)
    even = schedule(problem, arch, solver="highs", time_limit=30)
    moves = single_moves(even, problem, arch)
    assert moves, "no uneven variant to check"
    rng = random.Random(name)
    mappings = [even] + [Mapping(even.levels, {key: b}) for key, b in rng.sample(moves, 3)]
    for mapping in mappings:
        rows = compare(mapping, problem, arch)
        same = [r for r in rows if r.same_definition]
        assert len(same) >= 14
        assert [r for r in same if not r.equal] == [], mapping.tile_levels
        if name == "_outputs_input.11":  # no window, no stride: every count is comparable
            assert len(same) == len(rows)


def test_uneven_boundaries_reach_zigzag_as_per_operand_levels():
    """Moving the scratchpad's Inputs boundary down to the registers moves the accumulator's
    and the scratchpad's loops from the Inputs' scratchpad level to its DRAM level in ZigZag's
    temporal mapping; the other operands' levels do not change."""
    arch, problem = ARCHS["gemmini"], layer("_outputs_input.11")
    even = schedule(problem, arch, solver="highs")
    spad = arch.level_index("Scratchpad")
    loops = [len(lv.temporal_loops(problem.dims)) for lv in even.levels]
    uneven = Mapping(even.levels, {("Inputs", spad): 0})
    assert check_mapping(uneven, problem, arch) == []
    before = temporal_mapping_data(problem, even, arch)
    after = temporal_mapping_data(problem, uneven, arch)
    assert after["W"] == before["W"] and after["O"] == before["O"]
    assert [len(lv) for lv in before["I"]] == [sum(loops[:spad + 1]), sum(loops[spad + 1:])]
    assert [len(lv) for lv in after["I"]] == [loops[0], sum(loops[1:])]
    assert before["I"][0] + before["I"][1] == after["I"][0] + after["I"][1]
