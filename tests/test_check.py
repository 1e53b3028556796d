"""The check step (`tvm_cosa.check.check`) and `tvm-cosa evaluate`."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tvm_cosa import InputError, Problem, TimeloopError, load_architecture
from tvm_cosa.check import check, differences
from tvm_cosa.cli import main
from tvm_cosa.cost_model import evaluate
from tvm_cosa.timeloop import read_mapping

REFERENCE = Path(__file__).parent / "data" / "timeloop-reference"


def load_case(case):
    folder = REFERENCE / case
    problem = Problem.from_yaml(folder / "prob.yaml")
    arch = load_architecture(folder / "arch.yaml")
    return problem, arch, read_mapping(folder / "map.yaml", problem, arch)


@pytest.fixture
def no_timeloop(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("TIMELOOP_DIR", raising=False)


@pytest.fixture
def fake_timeloop(tmp_path, monkeypatch):
    """A fake timeloop-model on PATH that writes the recorded stats of FAKE_STATS."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "timeloop-model"
    script.write_text(f"#!{sys.executable}\n"
                      "import os, shutil\n"
                      "shutil.copy(os.environ['FAKE_STATS'], 'timeloop-model.stats.txt')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("TIMELOOP_DIR", raising=False)
    return lambda case: monkeypatch.setenv("FAKE_STATS", str(REFERENCE / case / "stats.txt"))


def test_builtin_backend(no_timeloop):
    problem, arch, mapping = load_case("simba__r50_outputs_input.40__cosa")
    ev = check(mapping, problem, arch, backend="builtin")
    assert ev.backend == "builtin"
    assert differences(ev, evaluate(mapping, problem, arch)) == []


def test_auto_without_timeloop_uses_builtin(no_timeloop):
    problem, arch, mapping = load_case("simba__r50_outputs_input.40__cosa")
    assert check(mapping, problem, arch).backend == "builtin"
    with pytest.raises(TimeloopError, match="not found"):
        check(mapping, problem, arch, backend="timeloop")


def test_auto_with_timeloop_uses_it(fake_timeloop):
    case = "simba__r50_outputs_input.40__cosa"
    fake_timeloop(case)
    problem, arch, mapping = load_case(case)
    ev = check(mapping, problem, arch)
    assert ev.backend == "timeloop"
    assert differences(evaluate(mapping, problem, arch), ev) == []


def test_invalid_mapping_reason(no_timeloop):
    problem, arch, mapping = load_case("gemmini__invalid_no_split")
    ev = check(mapping, problem, arch)
    assert not ev.valid
    assert ev.error.startswith("couldn't map level __ARITH__: mapped max Arithmetic X expansion")


def test_unknown_backend():
    problem, arch, mapping = load_case("simba__r50_outputs_input.40__cosa")
    with pytest.raises(InputError, match="unknown backend 'fast'"):
        check(mapping, problem, arch, backend="fast")


def test_differences_names_each_field():
    problem, arch, mapping = load_case("simba__r50_outputs_input.8__cosa")
    a, b = evaluate(mapping, problem, arch), evaluate(mapping, problem, arch)
    assert differences(a, b) == []
    b.level("GlobalBuffer").tensors["Inputs"].fills += 1
    b.cycles += 5
    b.energy_pJ *= 1.02
    diffs = differences(a, b)
    assert any(d.startswith("cycles") for d in diffs)
    assert any(d.startswith("GlobalBuffer.Inputs.fills") for d in diffs)
    assert any(d.startswith("energy") for d in diffs)
    problem, arch, invalid = load_case("simba__invalid_fanout")
    assert differences(a, evaluate(invalid, problem, arch))[0].startswith("valid")


# ---- the CLI ------------------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)])


def test_cli_prints_levels_and_tensors(no_timeloop):
    folder = REFERENCE / "gemmini__r50_outputs_input.8__hand"
    result = run("--arch", "gemmini", folder / "prob.yaml", folder / "map.yaml")
    assert result.exit_code == 0, result.output
    assert "cycles 451584" in result.output
    for level in ("Registers", "Accumulator", "Scratchpad", "DRAM"):
        assert level in result.output
    assert "estimated" not in result.output  # the preset has Timeloop's energy table


def test_cli_json_matches_the_reference_layout(no_timeloop):
    folder = REFERENCE / "simba__r50_outputs_input.2__mapper"
    result = run("--arch", folder / "arch.yaml", folder / "prob.yaml", folder / "map.yaml",
                 "--json")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    ref = json.loads((folder / "summary.json").read_text())
    assert got["energy_estimated"] is True and "estimated" in got["energy_note"]
    for key, value in ref.items():
        if key in ("timeloop", "command", "wall_s", "meta", "exit_code"):
            continue
        if key == "levels":
            for lv, rl in zip(got[key], value, strict=True):
                for t, stats in rl["dataspaces"].items():
                    stats.pop("energy_per_scalar_access_pJ_derived")
                    lv["dataspaces"][t].pop("energy_per_scalar_access_pJ_derived")
        assert got[key] == value, key


def test_cli_invalid_mapping(no_timeloop):
    folder = REFERENCE / "simba__invalid_capacity"
    result = run("--arch", "simba", folder / "prob.yaml", folder / "map.yaml", "--json")
    assert result.exit_code == 1
    ref = json.loads((folder / "summary.json").read_text())
    assert json.loads(result.stdout)["error"] == ref["error"]


def test_cli_compare_without_timeloop(no_timeloop):
    folder = REFERENCE / "simba__r50_outputs_input.5__cosa"
    result = run("--arch", "simba", folder / "prob.yaml", folder / "map.yaml", "--compare")
    assert result.exit_code == 0
    assert "timeloop-model not found" in result.stderr
    assert "cycles 20481" in result.output


def test_cli_compare_side_by_side(fake_timeloop):
    case = "simba__r50_outputs_input.5__bypass_gb_keeps_weights"
    fake_timeloop(case)
    folder = REFERENCE / case
    result = run("--arch", folder / "arch.yaml", folder / "prob.yaml", folder / "map.yaml",
                 "--compare")
    assert result.exit_code == 0, result.stderr
    assert "builtin" in result.output and "timeloop" in result.output
    assert "GlobalBuffer.Weights.reads" in result.output
    assert "agree (counts exact, energy within 1%)" in result.output


@pytest.mark.parametrize("args, message", [
    (["--arch", "tpu"], "tpu"),
    (["--arch", "simba", "--backend", "timeloop"], "timeloop-model not found"),
])
def test_cli_errors_are_clean(no_timeloop, args, message):
    folder = REFERENCE / "simba__r50_outputs_input.5__cosa"
    result = run(*args, folder / "prob.yaml", folder / "map.yaml")
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.output


def test_cli_missing_file(no_timeloop, tmp_path):
    result = run("--arch", "simba", tmp_path / "nope.yaml", tmp_path / "map.yaml")
    assert result.exit_code != 0 and "nope.yaml" in result.stderr


def test_cli_mapspace_sets_the_bypass_of_unlisted_levels(no_timeloop, tmp_path):
    import yaml

    folder = REFERENCE / "simba__r50_outputs_input.8__cosa"
    entries = yaml.safe_load((folder / "map.yaml").read_text())["mapping"]
    loops_only = tmp_path / "map.yaml"
    loops_only.write_text(yaml.safe_dump({"mapping": [e for e in entries
                                                      if e["type"] != "bypass"]}))
    mapspace = Path(__file__).parents[1] / "tvm_cosa" / "presets" / "simba.mapspace.yaml"
    with_mapspace = run("--arch", folder / "arch.yaml", "--mapspace", mapspace,
                        folder / "prob.yaml", loops_only, "--json")
    ref = json.loads((folder / "summary.json").read_text())
    assert json.loads(with_mapspace.stdout)["energy_pJ"] == ref["energy_pJ"]
    # Without it every level keeps every tensor, as in Timeloop: the 1-word registers overflow.
    keep_all = run("--arch", folder / "arch.yaml", folder / "prob.yaml", loops_only, "--json")
    assert keep_all.exit_code == 1
    assert "couldn't map level Registers" in json.loads(keep_all.stdout)["error"]
