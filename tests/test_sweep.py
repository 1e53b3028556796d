"""Design-space sweeps on a local process pool: space files, figures against the scheduler and the
cost model, the Pareto front, resuming through the cache, a killed worker, infeasible
configurations, the command line. (Ray: tests/test_sweep_ray.py; area: test_sweep_area.py.)"""

import csv

import pytest
import yaml
from click.testing import CliRunner

from tvm_cosa.cost_model import evaluate
from tvm_cosa.dse import estimate_area, load_model, load_space, sweep
from tvm_cosa.dse.tasks import CRASH_ONCE_ENV
from tvm_cosa.errors import InputError
from tvm_cosa.problem import Problem
from tvm_cosa.scheduler import schedule
from tvm_cosa.target.gemmini import GemminiConfig

SPACE = {"base": "gemmini", "params": {"dim": [4, 8], "scratchpad_kib": [16, 64]}}
LAYERS = {  # small layers: each solves in a fraction of a second
    "conv_a": {"C": 8, "K": 16, "P": 8, "Q": 8, "R": 3, "S": 3},
    "conv_b": {"C": 16, "K": 16, "P": 4, "Q": 4, "R": 1, "S": 1},
    "conv_b_again": {"C": 16, "K": 16, "P": 4, "Q": 4, "R": 1, "S": 1},  # same shape as conv_b
}


def write_layers(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, dims in LAYERS.items():
        problem = {"shape": "cnn-layer", "N": 1, "Wstride": 1, "Hstride": 1, "Wdilation": 1,
                   "Hdilation": 1, **dims}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({"problem": problem}))
    return folder


@pytest.fixture
def layers(tmp_path):
    return write_layers(tmp_path / "tinynet")


def run(models, space=SPACE, **kw):
    kw.setdefault("solver", "highs")
    kw.setdefault("progress", False)
    kw.setdefault("jobs", 2)
    return sweep(models, space, **kw)


# ---- space files ----------------------------------------------------------------------------
def test_grid_in_file_order_and_sampling_is_seeded():
    space = load_space({"base": "gemmini", "params": {"dim": [4, 8], "scratchpad_kib": [16, 32,
                                                                                        64]}})
    assert [p.params for p in space.points][:4] == [
        {"dim": 4, "scratchpad_kib": 16}, {"dim": 4, "scratchpad_kib": 32},
        {"dim": 4, "scratchpad_kib": 64}, {"dim": 8, "scratchpad_kib": 16}]
    assert space.grid_size == len(space.points) == 6
    assert space.points[4].arch == GemminiConfig(dim=8, scratchpad_kib=32).architecture()
    draw = {"base": "gemmini", "params": space.params, "sample": 3, "seed": 7}
    first, again = load_space(draw), load_space(draw)
    assert [p.params for p in first.points] == [p.params for p in again.points]
    assert len(first.points) == 3 and len({p.index for p in first.points}) == 3
    assert all(p.params == space.points[p.index].params for p in first.points)


def test_arch_file_parameters(tmp_path):
    space = load_space({"base": "simba", "params": {"levels.GlobalBuffer.entries": [4096, 8192],
                                                    "levels.DRAM.read_bandwidth": 16}})
    assert len(space.points) == 2
    buffers = [p.arch.levels[p.arch.level_index("GlobalBuffer")] for p in space.points]
    assert [b.entries for b in buffers] == [4096, 8192]
    assert all(p.arch.levels[-1].read_bandwidth == 16.0 for p in space.points)


@pytest.mark.parametrize("params, key, expected", [
    ({"dimm": [8]}, "params.dimm", "unknown parameter 'dimm'"),
    ({"dim": []}, "params.dim", "empty list"),
    ({"dim": [8, "big"]}, "params.dim", "not an int"),
    ({"dim": [8, 8]}, "params.dim", "repeated"),
    ({"dim": [3]}, "params.dim", "scratchpad_kib': 256 KiB is not a whole number of 3-byte"),
    ({"dim": [4, 12], "scratchpad_kib": [1, 3]}, "params.scratchpad_kib",
     "(dim=12, scratchpad_kib=1)"),
    ({"dim": [0]}, "params.dim", "positive integer"),
    ({"dataflow": ["XY"]}, "params.dataflow", "unknown dataflow"),
])
def test_bad_gemmini_space_names_the_key(params, key, expected):
    with pytest.raises(InputError) as err:
        load_space({"base": "gemmini", "params": params}, source="space.yaml")
    assert key in str(err.value) and expected in str(err.value)
    assert str(err.value).startswith("space.yaml")


@pytest.mark.parametrize("space, key, expected", [
    ({"base": "simba", "params": {"levels.Buffer.entries": [1]}}, "params.levels.Buffer.entries",
     "no level 'Buffer'"),
    ({"base": "simba", "params": {"levels.DRAM.colour": [1]}}, "params.levels.DRAM.colour",
     "unknown level field"),
    ({"base": "simba", "params": {"levels.GlobalBuffer.entries": [-4]}},
     "params.levels.GlobalBuffer.entries", "must be positive"),
    ({"base": "simba", "params": {"macs.instances": [1000]}}, "params.macs.instances",
     "whole number of children"),
    ({"base": "nosuch", "params": {"dim": [8]}}, "field 'base'", "nosuch"),
    ({"base": "gemmini", "params": {"dim": [4]}, "sample": 5}, "field 'sample'", "only 1"),
    ({"base": "gemmini", "params": {"dim": [4]}, "seed": 5}, "field 'seed'", "sample"),
    ({"base": "gemmini", "parameters": {"dim": [4]}}, "field 'parameters'", "unknown key"),
    ({"base": "gemmini"}, "field 'params'", "expected a mapping"),
])
def test_bad_space_files(tmp_path, space, key, expected):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(InputError) as err:
        load_space(path)
    assert key in str(err.value) and expected in str(err.value), str(err.value)


# ---- a sweep ----------------------------------------------------------------------------------
def test_sweep_figures_match_the_scheduler_and_cost_model(layers, tmp_path):
    result = run([layers], out=tmp_path / "out", cache=tmp_path / "cache")
    assert result.stats["unique_layers"] == 2 and result.stats["tasks"] == 8
    assert result.stats["solved"] == 8 and result.stats["cached"] == 0
    rows = result.rows
    assert len(rows) == 4 and all(r["status"] == "ok" and r["layers"] == 3 for r in rows)
    # recompute one configuration independently: schedule + evaluate each layer file
    row = next(r for r in rows if r["dim"] == 8 and r["scratchpad_kib"] == 16)
    arch = GemminiConfig(dim=8, scratchpad_kib=16).architecture()
    cycles = energy = macs = 0
    for file in sorted(layers.iterdir()):
        problem = Problem.from_yaml(file)
        ev = evaluate(schedule(problem, arch, solver="highs"), problem, arch)
        cycles, energy, macs = cycles + ev.cycles, energy + ev.energy_pJ, macs + problem.macs
    assert row["cycles"] == cycles
    assert row["energy_uJ"] == pytest.approx(energy / 1e6, rel=1e-9)
    assert row["edp_uJ_cycles"] == pytest.approx(energy / 1e6 * cycles, rel=1e-9)
    assert row["mac_utilization"] == pytest.approx(macs / (arch.num_macs * cycles))
    assert row["area_mm2_estimate"] == pytest.approx(estimate_area(arch).total_mm2, abs=1e-6)
    # the front: no ok row beats a front row on both axes; every other row is beaten
    def beats(a, b):
        return (a["cycles"] <= b["cycles"] and a["energy_uJ"] <= b["energy_uJ"]
                and (a["cycles"], a["energy_uJ"]) != (b["cycles"], b["energy_uJ"]))
    def beats_with_area(a, b):
        axes = ("cycles", "energy_uJ", "area_mm2_estimate")
        return all(a[x] <= b[x] for x in axes) and any(a[x] < b[x] for x in axes)
    for r in rows:
        assert r["pareto"] == (not any(beats(o, r) for o in rows))
        assert r["pareto_area"] == (not any(beats_with_area(o, r) for o in rows))
    assert any(r["pareto"] for r in rows)
    smallest = min(rows, key=lambda r: r["area_mm2_estimate"])
    assert smallest["pareto_area"]  # nothing is smaller
    # files
    with open(tmp_path / "out" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {"dim", "scratchpad_kib", "cycles", "energy_uJ", "edp_uJ_cycles",
                                "mac_utilization", "area_mm2_estimate", "status",
                                "layers_fallback", "fallback_reasons"} <= set(table[0])
    assert [int(t["cycles"]) for t in table] == [r["cycles"] for r in rows]
    png = tmp_path / "out" / "pareto.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # a second identical sweep solves nothing and gives the same rows
    again = run([layers], out=tmp_path / "out", cache=tmp_path / "cache")
    assert again.stats["solved"] == 0 and again.stats["cached"] == 8
    assert again.comparable() == result.comparable()


def test_resume_after_interruption(layers, tmp_path):
    cache = tmp_path / "cache"
    finished = []

    def interrupt_after_three(outcome):
        finished.append(outcome["id"])
        if len(finished) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run([layers], cache=cache, jobs=2, on_result=interrupt_after_three)
    resumed = run([layers], cache=cache)
    assert resumed.stats["cached"] == 3 and resumed.stats["solved"] == 8 - 3
    full = run([layers], cache=False)
    assert resumed.comparable() == full.comparable()
    assert run([layers], cache=cache).stats["solved"] == 0


def test_killed_worker_is_retried(layers, tmp_path, monkeypatch):
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    result = run([layers], cache=False, jobs=2)
    assert marker.exists()  # a worker did die
    assert result.stats["retried"] >= 1 and result.stats["worker_failures"] == 0
    monkeypatch.delenv(CRASH_ONCE_ENV)
    assert result.comparable() == run([layers], cache=False, jobs=1).comparable()


def test_infeasible_configuration_is_reported_and_the_sweep_goes_on(layers, tmp_path):
    arch = tmp_path / "small.yaml"
    arch.write_text(yaml.safe_dump({
        "name": "small", "macs": {"instances": 4, "mesh_x": 2},
        "levels": [{"name": "RF", "entries": 64, "instances": 4, "mesh_x": 2},
                   {"name": "Buffer", "entries": 4096},
                   {"name": "DRAM", "read_bandwidth": 4, "write_bandwidth": 4}]}))
    # an RF of 2 words cannot hold a tile of all three tensors: nothing fits
    space = {"base": str(arch), "params": {"levels.RF.entries": [2, 64]}}
    result = run([layers], space, cache=tmp_path / "cache")
    bad, good = result.rows
    assert bad["status"] == "infeasible" and bad["cycles"] is None and not bad["pareto"]
    assert bad["layers_fallback"] == 3 and "infeasible" in bad["fallback_reasons"]
    assert good["status"] == "ok" and good["pareto"] and good["layers_scheduled"] == 3
    # the verdict is remembered: a repeated sweep solves nothing, infeasible layers included
    assert run([layers], space, cache=tmp_path / "cache").stats["solved"] == 0


def test_layer_directory_merges_identical_layers(layers):
    model = load_model(layers)
    assert model.name == "tinynet" and model.num_layers == 3 and len(model.layers) == 2


def test_onnx_model_layers_are_extracted_once(tmp_path):
    pytest.importorskip("tvm")
    onnx = pytest.importorskip("onnx")
    from tvm_cosa.models import tiny_cnn

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(path))
    model = load_model(path)
    assert model.name == "tiny" and model.num_layers >= len(model.layers) >= 2
    result = run([path], {"base": "gemmini", "params": {"dim": [4]}}, cache=False)
    (row,) = result.rows
    assert row["status"] == "ok" and row["layers"] == model.num_layers


def test_missing_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such model file"):
        run([tmp_path / "nope.onnx"], cache=False)


# ---- command line -------------------------------------------------------------------------
def test_cli_sweep(layers, tmp_path):
    from tvm_cosa.cli import main

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    args = ["sweep", str(layers), "--space", str(space), "--out", str(tmp_path / "out"),
            "--solver", "highs", "--cache", str(tmp_path / "cache")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "8 tasks, 0 from the cache, 8 solved" in result.output
    assert "of 4 ok configurations" in result.output
    assert (tmp_path / "out" / "results.csv").is_file()
    again = CliRunner().invoke(main, args)
    assert "8 from the cache, 0 solved in" in again.output

    space.write_text(yaml.safe_dump({"base": "gemmini", "params": {"dim": [], "x": 1}}))
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 1 and "params.dim" in bad.output and "empty list" in bad.output
    assert "Traceback" not in bad.output


def test_cli_ray_without_ray_installed_is_a_clear_error(layers, tmp_path, monkeypatch):
    import sys

    from tvm_cosa.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    result = CliRunner().invoke(main, ["sweep", str(layers), "--space", str(space), "--out",
                                       str(tmp_path / "out"), "--ray", "--no-cache"])
    assert result.exit_code == 1 and "pip install 'tvm_cosa[ray]'" in result.output


def test_jobs_must_be_positive(layers):
    with pytest.raises(InputError, match="jobs"):
        run([layers], jobs=0, cache=False)



def test_evaluate_with_timeloop_equals_the_builtin_model(layers, tmp_path):
    from tvm_cosa.timeloop.runner import timeloop_available

    if not timeloop_available():
        pytest.skip("timeloop-model is not installed")
    space = {"base": "gemmini", "params": {"dim": [8]}}
    builtin = run([layers], space, cache=tmp_path / "cache")
    timeloop = run([layers], space, cache=tmp_path / "cache", evaluate="timeloop")
    # the schedules come from the cache; only the evaluation changes backend
    assert timeloop.stats["solved"] == 0
    (a,), (b,) = builtin.rows, timeloop.rows
    assert a["status"] == b["status"] == "ok"
    assert a["cycles"] == b["cycles"]
    assert a["energy_uJ"] == pytest.approx(b["energy_uJ"], rel=1e-6)
