"""Layers and pinned mappings shared by the uneven-mapping tests."""

from tvm_cosa import LevelMapping, Problem, preset


def gemmini_matmul_64():
    """A 64x64x64 matmul on Gemmini with its factors pinned: M temporal in the registers and the
    accumulator, K x N on the array, the scratchpad's N and K loops (K outer) that drain and
    reload every accumulator tile of Outputs 4 times under even mapping.
    Returns (problem, arch, levels, accumulator index, scratchpad index)."""
    problem = Problem.matmul(M=64, N=64, K=64)
    arch = preset("gemmini")
    acc, spad = arch.level_index("Accumulator"), arch.level_index("Scratchpad")
    levels = [LevelMapping() for _ in arch.levels]
    levels[0].temporal = {"M": 4}
    levels[acc] = LevelMapping(temporal={"M": 16}, spatial_x={"K": 16}, spatial_y={"N": 16})
    levels[spad] = LevelMapping(temporal={"N": 4, "K": 4}, order=("N", "K"))
    return problem, arch, levels, acc, spad
