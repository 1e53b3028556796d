"""Layer files: CoSA's ResNet-50 workloads, Timeloop v0.4 problems, matmuls, and bad input."""

import math
import textwrap
from pathlib import Path

import pytest
import yaml

from tvm_cosa import InputError, Problem

WORKLOADS = sorted((Path(__file__).parent / "data" / "workloads" / "resnet50").glob("*.yaml"))
CNN_DIMS = ("R", "S", "P", "Q", "C", "K", "N")


def test_all_resnet50_layers_load_with_their_sizes_and_strides():
    assert len(WORKLOADS) == 24
    for path in WORKLOADS:
        raw = yaml.safe_load(path.read_text())["problem"]
        prob = Problem.from_yaml(path)
        assert prob.name == path.stem and prob.kind == "conv2d"
        assert prob.size == {d: raw[d] for d in CNN_DIMS}
        assert (prob.param["Hstride"], prob.param["Wstride"]) == (raw["Hstride"], raw["Wstride"])
        assert prob.macs == math.prod(raw[d] for d in CNN_DIMS)
        # The input Timeloop counts: (P-1)*stride + (R-1)*dilation + 1 wide.
        width = (raw["P"] - 1) * raw["Wstride"] + (raw["R"] - 1) * raw["Wdilation"] + 1
        height = (raw["Q"] - 1) * raw["Hstride"] + (raw["S"] - 1) * raw["Hdilation"] + 1
        assert prob.full_size("Inputs") == raw["N"] * raw["C"] * width * height


def test_strided_1x1_input_is_the_bounding_box():
    # 1x1 stride 2 (_outputs_input.40): Timeloop's DRAM Inputs partition is 256 x 55 x 55.
    prob = Problem.from_yaml(next(p for p in WORKLOADS if p.stem == "_outputs_input.40"))
    assert prob.full_size("Inputs") == 774400


def test_timeloop_v04_problem_and_matmul_files(tmp_path):
    v04 = tmp_path / "conv.yaml"
    v04.write_text(textwrap.dedent("""
        problem:
          version: 0.4
          shape: {name: cnn-layer}
          instance: {C: 8, K: 16, R: 3, S: 3, P: 7, Q: 7, N: 2, Hstride: 2, Wstride: 2}
    """))
    prob = Problem.from_yaml(v04)
    assert prob.size == {"R": 3, "S": 3, "P": 7, "Q": 7, "C": 8, "K": 16, "N": 2}
    assert prob.full_size("Inputs") == 2 * 8 * 15 * 15
    mm = tmp_path / "mm.yaml"
    mm.write_text("problem: {shape: matmul, M: 64, N: 32, K: 128, B: 2}")
    prob = Problem.from_yaml(mm)
    assert prob.kind == "matmul" and prob.size == {"B": 2, "M": 64, "N": 32, "K": 128}
    grouped = tmp_path / "dw.yaml"
    grouped.write_text("problem: {shape: cnn-layer, G: 32, C: 1, K: 1, R: 3, S: 3, P: 14, "
                       "Q: 14, N: 1}")
    assert Problem.from_yaml(grouped).size["G"] == 32


GOOD = "problem: {shape: cnn-layer, R: 3, S: 3, P: 8, Q: 8, C: 4, K: 8, N: 1, Wstride: 1}"

BAD_PROBLEMS = [
    ("", None, "the file is empty"),
    ("problem: {R: [}", None, "not valid YAML"),
    ("- 1\n- 2", None, "expected a mapping with a 'problem' key"),
    ("problem: [1, 2]", "problem", "expected a mapping of dimension sizes"),
    (GOOD.replace("R: 3, ", ""), "problem.R", "missing; expected a positive integer"),
    (GOOD.replace("K: 8", "K: 0"), "problem.K", "expected a positive integer, got 0"),
    (GOOD.replace("K: 8", "K: -8"), "problem.K", "got -8"),
    (GOOD.replace("C: 4", "C: four"), "problem.C", "got 'four'"),
    (GOOD.replace("C: 4", "C: 4.5"), "problem.C", "got 4.5"),
    (GOOD.replace("N: 1", "N: true"), "problem.N", "got True"),
    (GOOD.replace("Wstride: 1", "Wstrde: 2"), "problem.Wstrde", "unknown field",
     "'Wstride'"),
    (GOOD.replace("cnn-layer", "lstm"), "problem.shape", "unknown shape 'lstm'",
     "'cnn-layer' or 'matmul'"),
    ("problem: {shape: matmul, M: 4, N: 4}", "problem.K", "missing"),
    ("problem: {shape: matmul, M: 4, N: 4, K: 4, R: 3}", "problem.R", "unknown field"),
    ("problem: {shape: {name: cnn-layer}, instance: [1]}", "problem.instance",
     "expected a mapping"),
    ("problem: {shape: {name: cnn-layer}, instance: {R: 1, S: 1, P: 1, Q: 1, C: 1, K: 0}}",
     "problem.instance.K", "positive integer"),
]


@pytest.mark.parametrize("text, field, phrases",
                         [pytest.param(t, f, p, id=f"{f}:{p[0][:25]}")
                          for t, f, *p in BAD_PROBLEMS])
def test_bad_problem_files_name_the_file_and_field(tmp_path, text, field, phrases):
    path = tmp_path / "layer.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        Problem.from_yaml(path)
    message = str(err.value)
    assert str(path) in message
    if field is not None:
        assert f"field '{field}'" in message, message
    for phrase in phrases:
        assert phrase in message, message


def test_the_good_problem_loads_and_a_missing_file_is_named(tmp_path):
    path = tmp_path / "layer.yaml"
    path.write_text(GOOD)
    assert Problem.from_yaml(path).macs == 3 * 3 * 8 * 8 * 4 * 8
    with pytest.raises(InputError, match=r"nope\.yaml: file not found"):
        Problem.from_yaml(tmp_path / "nope.yaml")
