"""Problem shapes other than cnn-layer (matmul, batched matmul, grouped and depthwise
convolution) written as Timeloop custom shapes and run through the real timeloop-model: it
accepts CoSA's schedule and a random valid map, and counts exactly what the built-in model
counts (issue 10, item 4). Skipped without timeloop-model on PATH."""

import random

import pytest

from tvm_cosa import Problem, preset
from tvm_cosa.cost_model import evaluate
from tvm_cosa.scheduler import schedule
from tvm_cosa.timeloop import find_timeloop, problem_dict, read_problem, run_timeloop
from tvm_cosa.timeloop.fuzz import compare, random_mapping

pytestmark = pytest.mark.skipif(find_timeloop() is None,
                                reason="timeloop-model is not on PATH")

SHAPES = {
    "matmul": Problem.matmul(M=64, N=96, K=48),
    "batched_matmul": Problem.matmul(M=12, N=20, K=36, batch=3),
    "grouped_conv": Problem.conv2d(K=8, C=4, P=7, Q=7, R=3, S=3, groups=4),
    "depthwise_conv_stride2": Problem.conv2d(K=1, C=1, P=14, Q=14, R=3, S=3, groups=32,
                                             stride=2),
    "depthwise_conv_dilated": Problem.conv2d(K=1, C=1, P=9, Q=9, R=3, S=3, groups=6,
                                             dilation=2),
}


@pytest.mark.parametrize("arch_name", ["simba", "gemmini"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_custom_shape_through_timeloop(shape, arch_name, tmp_path):
    problem, arch = SHAPES[shape], preset(arch_name)
    assert "shape" in problem_dict(problem)["problem"]  # not cnn-layer: a custom shape
    assert isinstance(problem_dict(problem)["problem"]["shape"], dict)
    maps = {"cosa": schedule(problem, arch, solver="highs"),
            "random": random_mapping(problem, arch, random.Random(shape))}
    for kind, mapping in maps.items():
        assert mapping is not None, kind
        theirs = run_timeloop(mapping, problem, arch, workdir=tmp_path / kind)
        assert theirs.valid, (kind, theirs.error)
        assert compare(evaluate(mapping, problem, arch), theirs) == [], kind
        assert theirs.computes == problem.macs
        # The problem file Timeloop read comes back as the same layer.
        back = read_problem(tmp_path / kind / "prob.yaml")
        assert back.tensors == problem.tensors and back.size == problem.size
