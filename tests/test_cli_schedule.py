"""`tvm-cosa schedule` end to end with the real scheduler on small layers."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tvm_cosa import Mapping, Problem, check_mapping, load_architecture, preset
from tvm_cosa.cli import main
from tvm_cosa.timeloop import read_mapping

EXAMPLES = Path(__file__).parent.parent / "examples" / "arch"

CONV = "problem: {shape: cnn-layer, R: 3, S: 3, P: 4, Q: 4, C: 8, K: 16, N: 1}\n"
MATMUL = "problem: {shape: matmul, M: 16, N: 32, K: 64}\n"
STRIDED = ("problem: {shape: cnn-layer, R: 1, S: 1, P: 7, Q: 7, C: 16, K: 8, N: 1, "
           "Hstride: 2, Wstride: 2}\n")


@pytest.fixture
def layers(tmp_path):
    paths = []
    for name, text in (("conv", CONV), ("mm", MATMUL), ("strided", STRIDED)):
        path = tmp_path / "layers" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def run(*args):
    return CliRunner().invoke(main, ["schedule", *map(str, args)])


def test_one_layer_prints_its_nest_objective_and_time(layers):
    result = run("--arch", "simba", layers[0])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("== conv: conv2d [R=3 S=3 P=4 Q=4 C=8 K=16 N=1] on simba")
    # Every level of the architecture is printed, outermost first, with its utilization.
    positions = [out.index(f"\n{name} [") for name in reversed(preset("simba").level_names)]
    assert positions == sorted(positions)
    assert "% of 65536)" in out  # GlobalBuffer utilization
    assert "objective " in out and " optimal in " in out and out.rstrip().endswith("valid")
    assert not any(line.split()[:2] == ["layer", "kind"] for line in out.splitlines())
    # one layer: no summary table, no progress bar
    assert result.stderr == ""


def test_many_layers_json_and_timeloop_maps(layers, tmp_path):
    out_json, map_dir = tmp_path / "out" / "records.json", tmp_path / "maps"
    result = run("--arch", "gemmini", "--json", out_json, "--timeloop-map", map_dir, *layers)
    assert result.exit_code == 0, result.output
    # Summary table: a header, one row per layer, a total row with 3/3 valid.
    lines = result.stdout.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "kind"]):]
    assert [row.split()[0] for row in table[2:5]] == ["conv", "mm", "strided"]
    assert table[-1].split()[0] == "total" and table[-1].split()[-1] == "3/3"
    assert "0/3 [" in result.stderr  # the progress bar, on stderr

    records = json.loads(out_json.read_text())
    arch = preset("gemmini")
    assert [r["layer"] for r in records] == ["conv", "mm", "strided"]
    for record, path in zip(records, layers):
        assert {"layer", "solver", "solve_time_s", "objective", "valid"} <= set(record)
        assert record["valid"] is True and record["error"] is None
        assert record["solver"] in ("highs", "gurobi") and record["solve_time_s"] >= 0
        assert isinstance(record["objective"], float)
        # The stored mapping is the schedule: re-checked here independently of the CLI.
        problem = Problem.from_yaml(path)
        mapping = Mapping.from_dict(record["mapping"])
        assert check_mapping(mapping, problem, arch) == []
        assert record["compute_cycles"] == mapping.compute_cycles()
        assert record["mac_utilization"] == mapping.utilized_macs() / arch.num_macs
        # ...and the Timeloop map file describes the same factors.
        map_file = map_dir / f"{path.stem}.map.yaml"
        assert record["timeloop_map"] == str(map_file)
        entries = yaml.safe_load(map_file.read_text())["mapping"]
        assert {e["target"] for e in entries} <= set(arch.level_names)
        again = read_mapping(map_file, problem, arch)
        for d in problem.dims:
            assert [lv.factor(d) for lv in again.levels] == \
                [lv.factor(d) for lv in mapping.levels]


def test_short_format_architecture_with_a_mapspace(layers, tmp_path):
    mapspace = tmp_path / "ms.yaml"
    mapspace.write_text("mapspace:\n  constraints:\n"
                        "  - {target: Spad, type: bypass, keep: [Inputs, Weights, Outputs]}\n")
    result = run("--arch", EXAMPLES / "my_accel.yaml", "--mapspace", mapspace, "--no-nest",
                 layers[1])
    assert result.exit_code == 0, result.output
    assert "on my-accel" in result.stdout and "\nSpad [" not in result.stdout  # --no-nest
    arch = load_architecture(EXAMPLES / "my_accel.yaml", mapspace)
    assert arch.levels[2].keeps == {"Inputs", "Weights", "Outputs"}


def test_an_unschedulable_layer_is_reported_and_the_others_go_on(layers, tmp_path):
    # One register that must hold a word of each tensor: no schedule fits.
    arch = tmp_path / "tiny.yaml"
    arch.write_text("macs: {instances: 1}\nlevels:\n"
                    "  - {name: RF, entries: 2, keeps: [Weights, Inputs, Outputs]}\n"
                    "  - {name: DRAM}\n")
    json_path = tmp_path / "r.json"
    result = run("--arch", arch, "--json", json_path, layers[0])
    assert result.exit_code == 1
    assert "no schedule" in result.stdout
    assert "1 of 1 layers have no valid schedule: conv" in result.stderr
    (record,) = json.loads(json_path.read_text())
    assert record["valid"] is False and record["status"] == "infeasible"
    assert "level RF" in record["error"]


def test_solver_options_reach_the_solver(layers, tmp_path):
    json_path = tmp_path / "r.json"
    result = run("--arch", "simba", "--solver", "highs", "--time-limit", "30", "--gap", "0.5",
                 "--json", json_path, layers[1])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(json_path.read_text())
    assert record["solver"] == "highs" and record["valid"] is True
    # A 50% gap lets the solver stop early: the bound is within half the objective.
    assert record["gap"] is None or record["gap"] <= 0.5 + 1e-9


BAD_RUNS = [
    (["--arch", "simbaa"], "unknown architecture preset 'simbaa'"),
    (["--arch", "{tmp}/missing.arch.yaml"], "missing.arch.yaml: file not found"),
    (["--arch", "{tmp}/bad.arch.yaml"], "field 'levels[0].entries'"),
    (["--arch", "simba", "--mapspace", "{tmp}/bad.mapspace.yaml"],
     "field 'mapspace.constraints[0].target': no level named 'GLB'"),
    (["--arch", "simba", "{tmp}/bad_layer.yaml"], "bad_layer.yaml: field 'problem.K'"),
    (["--arch", "simba", "{tmp}/no_layer.yaml"], "no_layer.yaml: file not found"),
]


@pytest.mark.parametrize("args, message", BAD_RUNS)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, layers, args, message):
    (tmp_path / "bad.arch.yaml").write_text("macs: {instances: 4}\nlevels:\n"
                                            "  - {name: RF, entries: -1}\n  - {name: DRAM}\n")
    (tmp_path / "bad.mapspace.yaml").write_text(
        "mapspace: {constraints: [{target: GLB, type: bypass, keep: [Inputs]}]}")
    (tmp_path / "bad_layer.yaml").write_text(CONV.replace("K: 16", "K: 0"))
    args = [a.format(tmp=tmp_path) for a in args]
    if not any(a.endswith("layer.yaml") for a in args):
        args.append(str(layers[0]))
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_usage_errors(layers, tmp_path):
    result = run("--arch", "simba", "--solver", "cplex", layers[0])
    assert result.exit_code == 2 and "'cplex' is not one of 'auto', 'highs', 'gurobi'" in \
        result.stderr
    assert run("--arch", "simba").exit_code == 2  # no layer
    twin = tmp_path / "other" / "conv.yaml"
    twin.parent.mkdir()
    twin.write_text(CONV)
    result = run("--arch", "simba", "--timeloop-map", tmp_path / "maps", layers[0], twin)
    assert result.exit_code == 2 and "would both be written to conv.map.yaml" in result.stderr
    assert not (tmp_path / "maps").exists()  # nothing solved or written


# ---- a CoSA-format architecture read without its mapspace --------------------------------------
DATA = Path(__file__).parent / "data"
SIMBA_ARCH = DATA / "arch" / "simba.yaml"
SIMBA_MAPSPACE = DATA / "arch" / "simba-mapspace.yaml"


def test_missing_mapspace_is_named_when_the_layer_is_infeasible():
    from tvm_cosa import schedule
    from tvm_cosa.errors import InfeasibleError

    layer = Problem.conv2d(K=64, C=64, P=14, Q=14, R=3, S=3)
    bare = load_architecture(SIMBA_ARCH)
    with pytest.raises(InfeasibleError) as err:
        schedule(layer, bare)
    assert "mapspace (bypass) file is probably missing" in str(err.value)
    assert "mapspace='MAPSPACE.yaml'" in str(err.value)
    # with its mapspace the same file schedules, and no hint is attached anywhere
    mapping = schedule(layer, load_architecture(SIMBA_ARCH, mapspace=SIMBA_MAPSPACE))
    assert check_mapping(mapping, layer, load_architecture(SIMBA_ARCH, mapspace=SIMBA_MAPSPACE)) \
        == []


def test_missing_mapspace_hint_in_the_cli_speaks_cli(layers):
    result = CliRunner().invoke(main, ["schedule", "--arch", str(SIMBA_ARCH), str(layers[0])])
    assert result.exit_code != 0
    assert "--mapspace MAPSPACE.yaml" in result.output and "mapspace=" not in result.output
    ok = CliRunner().invoke(main, ["schedule", "--arch", str(SIMBA_ARCH), "--mapspace",
                                   str(SIMBA_MAPSPACE), str(layers[0])])
    assert ok.exit_code == 0, ok.output


def test_polish_is_reported_and_can_be_turned_off(tmp_path):
    """The case timeloop-mapper once won (tests/data/mapper_wins): the polish moves factors,
    the line and the JSON record say so; --no-polish returns the MILP's schedule."""
    case = Path(__file__).parent / "data" / "mapper_wins" / "random5007_latency"
    common = ("--arch", case / "arch.yaml", "--mapspace", case / "mapper.yaml", "--no-nest",
              "--objective", "latency")
    polished, plain = tmp_path / "polished.json", tmp_path / "plain.json"
    result = run(*common, "--json", polished, case / "prob.yaml")
    assert result.exit_code == 0, result.output
    record, = json.loads(polished.read_text())
    report = record["polish"]
    assert {"moves", "evaluations", "cycles_before", "cycles", "energy_before_pJ",
            "energy_pJ"} <= set(report)
    assert report["moves"] >= 1 and "polished by the cost model" in result.stdout
    assert (report["cycles"], report["energy_pJ"]) <= (report["cycles_before"],
                                                       report["energy_before_pJ"])
    result = run(*common, "--no-polish", "--json", plain, case / "prob.yaml")
    assert result.exit_code == 0, result.output
    record, = json.loads(plain.read_text())
    assert record["polish"] is None and "polished" not in result.stdout
