"""Architectures from Timeloop's own tutorials (tests/data/arch/third_party), read as
timeloop-model reads them; with timeloop-model on PATH, CoSA's schedules on them are run through
it on the original file and every count, cycle and energy must agree."""

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from tvm_cosa import Problem, load_architecture, schedule
from tvm_cosa.cost_model import evaluate
from tvm_cosa.errors import InputWarning
from tvm_cosa.timeloop.files import write_problem
from tvm_cosa.timeloop.fuzz import compare
from tvm_cosa.timeloop.mapping_io import write_mapping
from tvm_cosa.timeloop.runner import find_timeloop
from tvm_cosa.timeloop.stats import parse_stats

HERE = Path(__file__).parent / "data"
THIRD = HERE / "arch" / "third_party"
SPECS = json.loads((THIRD / "timeloop_specs.json").read_text())
LAYERS = ["_outputs_3356", "_outputs_input.73"]


def load(name):
    constraints = THIRD / f"{name}.constraints.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        return load_architecture(THIRD / f"{name}.yaml",
                                 constraints if constraints.exists() else None)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_reads_what_timeloop_printed(name):
    arch, specs = load(name), SPECS[name]
    assert (arch.num_macs, arch.arithmetic.word_bits) == (
        specs["arithmetic"]["instances"], specs["arithmetic"]["word_bits"])
    assert list(arch.level_names) == [s["name"] for s in specs["levels"]]
    for lv, s in zip(arch.levels, specs["levels"]):
        assert (lv.entries, lv.instances, lv.word_bits, lv.block_size, lv.cluster_size) == (
            s["size"], s["instances"], s["word_bits"], s["block_size"], s["cluster_size"]), lv.name
        assert lv.is_dram == (s["technology"] == "DRAM"), lv.name
        assert (lv.read_bandwidth, lv.write_bandwidth, lv.shared_bandwidth) == (
            s["read_bandwidth"], s["write_bandwidth"], s["shared_bandwidth"]), lv.name


def test_the_unread_spelling_is_named():
    with pytest.warns(InputWarning, match=r"component psum_spad: timeloop-model does not read "
                                          r"'word_bits' .* rename it to 'word-bits'"):
        load_architecture(THIRD / "eyeriss_like-float32.yaml")


def test_v02_entries_with_attributes():
    """`arch:` entries written {name, class, attributes: {...}} (Timeloop reads both layouts)."""
    arch = load_architecture(HERE / "arch" / "nested_attributes.v03.yaml")
    assert [(lv.name, lv.entries, lv.instances, lv.block_size, lv.is_dram) for lv in arch.levels] \
        == [("RF", 32, 64, 1, False), ("GLB", 2048 * 8, 1, 8, False),
            ("MainMemory", None, 1, 8, True)]
    assert (arch.arithmetic.name, arch.num_macs, arch.arithmetic.mesh) == ("MACs", 64, (8, 8))


needs_timeloop = pytest.mark.skipif(find_timeloop() is None, reason="timeloop-model is not "
                                    "installed (put it on PATH or set TIMELOOP_DIR)")


@needs_timeloop
@pytest.mark.parametrize("name", sorted(SPECS) + ["../nested_attributes.v03"])
def test_cosa_schedules_equal_timeloop_on_the_original_file(name, tmp_path):
    arch = load(name)
    for layer in LAYERS:
        problem = Problem.from_yaml(HERE / "workloads" / "resnet50" / f"{layer}.yaml")
        mapping = schedule(problem, arch, solver="highs")
        folder = tmp_path / name.replace("/", "_") / layer
        folder.mkdir(parents=True)
        shutil.copy(THIRD / f"{name}.yaml", folder / "arch.yaml")  # Timeloop reads the original
        write_problem(problem, folder / "prob.yaml")
        write_mapping(mapping, problem, arch, folder / "map.yaml")
        run = subprocess.run([str(find_timeloop()), "arch.yaml", "prob.yaml", "map.yaml"],
                             cwd=folder, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        theirs = parse_stats((folder / "timeloop-model.stats.txt").read_text())
        assert compare(evaluate(mapping, problem, arch), theirs) == [], (name, layer)
