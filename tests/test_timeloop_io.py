"""Timeloop files (map / problem / architecture), the stats parser, and the timeloop-model runner.

The runner is exercised for real with a fake `timeloop-model` script put on PATH (Timeloop is
not installed here): success (it copies a recorded stats.txt), a rejected mapping, a crash, a
missing stats file, a missing binary and a time-out. Tests that need the real binary are
skipped with the reason when it is absent.
"""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from tvm_cosa import (InputError, LevelMapping, Mapping, Problem, TimeloopError,
                      load_architecture, preset)
from tvm_cosa.check import differences
from tvm_cosa.cost_model import evaluate
from tvm_cosa.timeloop import (architecture_dict, find_timeloop, mapping_entries, mapping_yaml,
                               parse_factors, parse_stats, problem_dict, read_mapping,
                               read_problem, run_timeloop, timeloop_available,
                               write_architecture, write_mapping, write_problem)

REFERENCE = Path(__file__).parent / "data" / "timeloop-reference"
CASES = sorted(p.name for p in REFERENCE.iterdir() if (p / "summary.json").is_file())
WITH_STATS = [c for c in CASES if (REFERENCE / c / "stats.txt").is_file()]
DIMS = ("R", "S", "P", "Q", "C", "K", "N")


def load_case(case):
    folder = REFERENCE / case
    problem = Problem.from_yaml(folder / "prob.yaml")
    arch = load_architecture(folder / "arch.yaml")
    return problem, arch, read_mapping(folder / "map.yaml", problem, arch)


def same_mapping(a: Mapping, b: Mapping, dims):
    for x, y in zip(a.levels, b.levels, strict=True):
        assert {d: f for d, f in x.temporal.items() if f > 1} == \
            {d: f for d, f in y.temporal.items() if f > 1}
        assert x.spatial_x == y.spatial_x and x.spatial_y == y.spatial_y
        assert [d for d in x.full_order(dims) if x.temporal.get(d, 1) > 1] == \
            [d for d in y.full_order(dims) if y.temporal.get(d, 1) > 1]
        assert x.keeps == y.keeps


# ---- map files ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("R=1 S=3 P=7", {"R": 1, "S": 3, "P": 7}),
    ("R1 S3 P7", {"R": 1, "S": 3, "P": 7}),
    ("K=16", {"K": 16}),
    ({"C": 4}, {"C": 4}),
])
def test_parse_factors(text, expected):
    assert parse_factors(text, DIMS) == expected


@pytest.mark.parametrize("text, message", [("X=2", "unknown dimension 'X'"),
                                           ("R=a", "cannot read factor"),
                                           ("R=0", "positive integer"),
                                           ("R=2 R=3", "given twice")])
def test_parse_factors_errors(text, message):
    with pytest.raises(InputError, match=message):
        parse_factors(text, DIMS, source="map.yaml", field="mapping[0].factors")


def test_read_mapping_rules():
    problem = Problem.conv2d(K=16, C=16, P=4, Q=4, R=1, S=1)
    arch = preset("gemmini")
    data = {"mapping": [
        {"target": "Registers", "type": "temporal", "factors": "P2", "permutation": "P"},
        {"target": "Accumulator", "type": "spatial", "factors": "C=16 K=16",
         "permutation": "CKRSPQN", "split": 1},
        {"target": "Scratchpad", "type": "temporal", "factors": "P=2 Q=4",
         "permutation": "QP"},
        {"target": "Scratchpad", "type": "datatype", "keep": ["Inputs"],
         "bypass": ["Weights", "Outputs"]},
        {"target": "DRAM", "type": "bypass", "bypass": ["Outputs"]},
    ]}
    m = read_mapping(data, problem, arch)
    assert m.levels[0].temporal == {"P": 2}
    assert m.levels[0].order[:1] == ("P",) and set(m.levels[0].order) == set(problem.dims)
    assert m.levels[1].spatial_x == {"C": 16} and m.levels[1].spatial_y == {"K": 16}
    assert m.levels[2].order[:2] == ("Q", "P")  # missing letters appended after
    assert m.levels[2].keeps == {"Inputs"}
    assert m.levels[3].keeps == {"Weights", "Inputs"}
    # Timeloop: a level without a bypass entry keeps everything.
    assert m.levels[0].keeps == m.levels[1].keeps == {"Weights", "Inputs", "Outputs"}
    # ...unless asked to use the architecture's own bypass pattern (a mapspace's).
    m = read_mapping(data, problem, arch, keep_unlisted=False)
    assert m.levels[0].keeps == {"Weights"} and m.levels[1].keeps == {"Outputs"}
    assert m.levels[2].keeps == {"Inputs"}  # the map's own entry still wins
    no_split = dict(data["mapping"][1])
    no_split.pop("split")
    m = read_mapping({"mapping": [no_split]}, problem, arch)
    assert m.levels[1].spatial_x == {"C": 16, "K": 16} and not m.levels[1].spatial_y


@pytest.mark.parametrize("entry, message", [
    ({"target": "L2", "type": "temporal"}, "not a level"),
    ({"target": "DRAM", "type": "loop"}, "unknown type"),
    ({"target": "DRAM", "type": "temporal", "permutation": "RRS"}, "repeats"),
    ({"target": "DRAM", "type": "bypass", "keep": ["Psums"]}, "must list tensors"),
    ({"target": "DRAM", "type": "temporal", "factor": "K=16"}, r"unknown key\(s\) \['factor'\]"),
    ({"target": "DRAM", "type": "temporal", "factors": "K=16", "split": 1}, "'split'"),
    ({"target": "DRAM", "type": "bypass", "keeps": ["Inputs"]}, r"\['keeps'\].*'bypass', 'keep'"),
])
def test_read_mapping_errors(entry, message):
    problem = Problem.conv2d(K=16, C=16, P=4, Q=4)
    with pytest.raises(InputError, match=message):
        read_mapping({"mapping": [entry]}, problem, preset("gemmini"))


@pytest.mark.parametrize("case", CASES)
def test_map_round_trip(case, tmp_path):
    """Every reference map reads (both factor syntaxes), writes and reads back unchanged, and
    the written file evaluates to the same result."""
    problem, arch, mapping = load_case(case)
    path = write_mapping(mapping, problem, arch, tmp_path / "map.yaml")
    again = read_mapping(path, problem, arch)
    same_mapping(mapping, again, problem.dims)
    assert differences(evaluate(mapping, problem, arch), evaluate(again, problem, arch)) == []


def test_written_map_layout():
    problem, arch, mapping = load_case("gemmini__r50_outputs_input.8__hand")
    entries = mapping_entries(mapping, problem, arch)
    spatial = [e for e in entries if e["type"] == "spatial"]
    assert [e["target"] for e in spatial] == ["Accumulator"]  # only where the count changes
    (acc,) = spatial
    x = acc["permutation"][:acc["split"]]
    assert "C" in x and "K" not in x
    assert sum(e["type"] == "temporal" for e in entries) == arch.num_levels
    assert sum(e["type"] == "bypass" for e in entries) == arch.num_levels
    simba_problem, simba, cosa = load_case("simba__r50_outputs_input.8__cosa")
    spatial = [e for e in mapping_entries(cosa, simba_problem, simba) if e["type"] == "spatial"]
    assert {e["target"] for e in spatial} == {"AccumulationBuffer", "InputBuffer", "GlobalBuffer"}
    assert not any("split" in e for e in spatial)  # everything on X, like CoSA's maps


def test_unwritable_mappings_are_named():
    problem, arch, mapping = load_case("simba__r50_outputs_input.8__cosa")
    levels = list(mapping.levels)
    wb = arch.level_index("WeightBuffer")
    levels[wb] = LevelMapping(spatial_x={"K": 2})
    with pytest.raises(InputError, match="WeightBuffer"):
        mapping_entries(Mapping(levels), problem, arch)
    levels = list(mapping.levels)
    gb = arch.level_index("GlobalBuffer")
    levels[gb] = LevelMapping(spatial_x={"P": 2}, spatial_y={"P": 2})
    with pytest.raises(InputError, match="both X and Y"):
        mapping_entries(Mapping(levels), problem, arch)


# ---- problem and architecture files -------------------------------------------------------
def test_conv_is_written_as_cnn_layer():
    layer = Problem.conv2d(K=64, C=32, P=28, Q=28, R=3, S=3, stride=2, name="c")
    body = problem_dict(layer)["problem"]
    assert body["shape"] == "cnn-layer"
    assert (body["Wstride"], body["Hstride"], body["R"], body["K"]) == (2, 2, 3, 64)
    reference = yaml.safe_load((REFERENCE / "simba__r50_outputs_input.36__cosa" /
                                "prob.yaml").read_text())
    layer = Problem.from_dict(reference)
    assert problem_dict(layer) == reference


@pytest.mark.parametrize("layer", [
    Problem.matmul(M=64, N=32, K=16),
    Problem.matmul(M=8, N=8, K=8, batch=4),
    Problem.conv2d(K=1, C=1, P=14, Q=14, R=3, S=3, groups=32, stride=2),
    Problem.conv2d(K=8, C=4, P=7, Q=7, R=3, S=3, dilation=(2, 1), groups=2),
])
def test_custom_shapes_round_trip(layer, tmp_path):
    body = problem_dict(layer)["problem"]
    assert isinstance(body["shape"], dict) and "data-spaces" in body["shape"]
    back = read_problem(write_problem(layer, tmp_path / "prob.yaml"))
    assert back.sizes == layer.sizes and back.tensors == layer.tensors


def test_architecture_passes_through_the_users_file(tmp_path):
    path = REFERENCE / "gemmini__r50_outputs_input.8__hand" / "arch.yaml"
    arch = load_architecture(path)
    written = write_architecture(arch, tmp_path / "arch.yaml")
    assert yaml.safe_load(written.read_text()) == yaml.safe_load(path.read_text())
    simba = preset("simba")  # a preset is a Timeloop file too: written as it is
    assert architecture_dict(simba) == simba.timeloop_spec


def test_architecture_without_a_file_is_written_in_timeloops_format(tmp_path):
    arch = preset("simba").with_bypass({"GlobalBuffer": ["Inputs", "Outputs", "Weights"]})
    assert arch.timeloop_spec is None
    written = write_architecture(arch, tmp_path / "arch.yaml")
    data = yaml.safe_load(written.read_text())
    storage = data["arch"]["storage"]
    assert [s["name"] for s in storage] == list(arch.level_names)
    assert storage[-1]["technology"] == "DRAM"
    assert storage[0]["vector-access-energy"] == arch.levels[0].read_energy_pJ
    back = load_architecture(written)
    for a, b in zip(back.levels, arch.levels):
        assert (a.entries, a.instances, a.block_size, a.cluster_size, a.word_bits) == \
            (b.entries, b.instances, b.block_size, b.cluster_size, b.word_bits)
        assert (a.read_bandwidth, a.write_bandwidth) == (b.read_bandwidth, b.write_bandwidth)
    assert back.arithmetic.instances == arch.arithmetic.instances


# ---- stats parser -------------------------------------------------------------------------
@pytest.mark.parametrize("case", WITH_STATS)
def test_parse_recorded_stats(case):
    ref = json.loads((REFERENCE / case / "summary.json").read_text())
    ev = parse_stats((REFERENCE / case / "stats.txt").read_text())
    assert ev.backend == "timeloop" and ev.valid
    assert (ev.cycles, ev.computes) == (ref["cycles"], ref["computes"])
    # Recomputed from the exact counts; the summary prints it with 2 decimals.
    assert ev.utilization == pytest.approx(ref["utilization"], abs=0.005 + 1e-9)
    assert ev.utilization == ev.computes / (ev.arithmetic["instances"] * ev.cycles)
    assert ev.energy_pJ == pytest.approx(ref["energy_pJ"], abs=0.05)
    assert ev.arithmetic == {k: ref["arithmetic"][k] for k in ev.arithmetic}
    for lv, rl in zip(ev.levels, ref["levels"], strict=True):
        assert (lv.name, lv.index, lv.cycles, lv.loop_nest) == \
            (rl["name"], rl["index"], rl["cycles"], rl["loop_nest"])
        assert lv.specs == rl["specs"]
        for tensor, expected in rl["dataspaces"].items():
            got = lv.tensors[tensor].to_dict()
            assert got == {k: expected[k] for k in got}
    assert ev.networks == [{"name": n["name"], "dataspaces": n["dataspaces"]}
                           for n in ref["networks"]]
    # The built-in model and the parsed stats agree (the check step compares these).
    problem, arch, mapping = load_case(case)
    assert differences(evaluate(mapping, problem, arch), ev) == []


def test_parse_rejects_other_text():
    with pytest.raises(TimeloopError, match="Summary Stats"):
        parse_stats("ERROR: couldn't map level GlobalBuffer\n")


# ---- the runner, with a fake timeloop-model ------------------------------------------------
FAKE = """#!{python}
import json, os, shutil, sys, time
mode = os.environ.get("FAKE_TIMELOOP_MODE", "ok")
given = {{name: open(name).read() for name in sys.argv[1:]}}
with open(os.environ["FAKE_TIMELOOP_LOG"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "files": given}}, f)
print("MESSAGE: attempting to read problem shape from file", file=sys.stderr)
if mode == "ok":
    shutil.copy(os.environ["FAKE_TIMELOOP_STATS"], "timeloop-model.stats.txt")
    print("Utilization = 1.00 | pJ/Compute =    1.045")
elif mode == "reject":
    print("ERROR: couldn't map level GlobalBuffer: mapped tile size 90624 exceeds buffer "
          "capacity 65536", file=sys.stderr)
    sys.exit(1)
elif mode == "crash":
    print("ERROR: cannot find problem shape 'cnn-layer'", file=sys.stderr)
    sys.exit(1)
elif mode == "segfault":
    print("Segmentation fault (core dumped)", file=sys.stderr)
    sys.exit(139)
elif mode == "hang":
    time.sleep(60)
"""


@pytest.fixture
def fake_timeloop(tmp_path, monkeypatch):
    """A fake timeloop-model on PATH; returns (set_mode, read_log)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "timeloop-model"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "fake.json"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("TIMELOOP_DIR", raising=False)
    monkeypatch.setenv("FAKE_TIMELOOP_LOG", str(log))

    def set_mode(mode, stats=None):
        monkeypatch.setenv("FAKE_TIMELOOP_MODE", mode)
        if stats is not None:
            monkeypatch.setenv("FAKE_TIMELOOP_STATS", str(stats))

    return set_mode, lambda: json.loads(log.read_text()), bindir


def test_runner_success(fake_timeloop):
    set_mode, read_log, bindir = fake_timeloop
    case = "simba__r50_outputs_input.83__perm_dram_KPC"
    set_mode("ok", REFERENCE / case / "stats.txt")
    problem, arch, mapping = load_case(case)
    assert find_timeloop() == bindir / "timeloop-model"
    ev = run_timeloop(mapping, problem, arch)
    assert ev.backend == "timeloop" and ev.valid
    assert ev.info["exit_code"] == 0 and ev.info["command"].startswith("timeloop-model arch.yaml")
    assert ev.energy_estimated  # a plain Timeloop file: Timeloop used its built-in estimate
    assert differences(evaluate(mapping, problem, arch), ev) == []
    given = read_log()
    assert given["argv"] == ["arch.yaml", "prob.yaml", "map.yaml"]
    files = given["files"]
    assert yaml.safe_load(files["arch.yaml"]) == yaml.safe_load(
        (REFERENCE / case / "arch.yaml").read_text())
    assert yaml.safe_load(files["prob.yaml"]) == yaml.safe_load(
        (REFERENCE / case / "prob.yaml").read_text())
    same_mapping(read_mapping(yaml.safe_load(files["map.yaml"]), problem, arch), mapping,
                 problem.dims)


def test_runner_rejected_mapping_is_invalid(fake_timeloop):
    set_mode, _, _ = fake_timeloop
    set_mode("reject")
    problem, arch, mapping = load_case("simba__invalid_capacity")
    ev = run_timeloop(mapping, problem, arch)
    assert not ev.valid and ev.backend == "timeloop" and ev.info["exit_code"] == 1
    assert ev.error == evaluate(mapping, problem, arch).error
    assert ev.to_summary()["error"] == json.loads(
        (REFERENCE / "simba__invalid_capacity" / "summary.json").read_text())["error"]


@pytest.mark.parametrize("mode, message", [
    ("crash", "(?s)exit status 1.*cannot find problem shape 'cnn-layer'"),
    ("segfault", "(?s)exit status 139.*Segmentation fault"),
    ("nostats", "wrote no timeloop-model.stats.txt"),
])
def test_runner_failures_carry_timeloops_message(fake_timeloop, mode, message):
    set_mode, _, _ = fake_timeloop
    set_mode(mode)
    problem, arch, mapping = load_case("simba__r50_outputs_input.8__cosa")
    with pytest.raises(TimeloopError, match=message):
        run_timeloop(mapping, problem, arch)


def test_runner_time_out(fake_timeloop):
    set_mode, _, _ = fake_timeloop
    set_mode("hang")
    problem, arch, mapping = load_case("simba__r50_outputs_input.8__cosa")
    with pytest.raises(TimeloopError, match="did not finish within 1 s"):
        run_timeloop(mapping, problem, arch, timeout=1)


def test_runner_missing_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TIMELOOP_DIR", raising=False)
    assert not timeloop_available()
    problem, arch, mapping = load_case("simba__r50_outputs_input.8__cosa")
    with pytest.raises(TimeloopError, match="timeloop-model not found"):
        run_timeloop(mapping, problem, arch)
    with pytest.raises(TimeloopError, match="not found in '/nowhere'"):
        run_timeloop(mapping, problem, arch, timeloop="/nowhere")


def test_binary_from_timeloop_dir_and_explicit_path(fake_timeloop, tmp_path, monkeypatch):
    _, _, bindir = fake_timeloop
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_timeloop() is None
    root = bindir.parent
    (root / "bin").mkdir()
    (bindir / "timeloop-model").rename(root / "bin" / "timeloop-model")
    monkeypatch.setenv("TIMELOOP_DIR", str(root))
    assert find_timeloop() == root / "bin" / "timeloop-model"
    monkeypatch.delenv("TIMELOOP_DIR")
    assert find_timeloop(root / "bin" / "timeloop-model") == root / "bin" / "timeloop-model"
    assert find_timeloop(root) == root / "bin" / "timeloop-model"


def test_runner_keeps_its_folder_on_request(fake_timeloop):
    set_mode, _, _ = fake_timeloop
    case = "gemmini__r50_outputs_input.8__hand"
    set_mode("ok", REFERENCE / case / "stats.txt")
    problem, arch, mapping = load_case(case)
    ev = run_timeloop(mapping, problem, arch, keep=True)
    folder = Path(ev.info["workdir"])
    assert {p.name for p in folder.iterdir()} >= {"arch.yaml", "prob.yaml", "map.yaml",
                                                  "timeloop-model.stats.txt"}


# ---- real Timeloop (skipped when not installed) -------------------------------------------
REAL = pytest.mark.skipif(not timeloop_available(),
                          reason="timeloop-model is not installed (put it on PATH or set "
                                 "TIMELOOP_DIR to run these tests against real Timeloop)")


@REAL
@pytest.mark.parametrize("case", ["simba__r50_outputs_input.8__cosa",
                                  "simba__r50_outputs_input.83__perm_dram_KPC",
                                  "gemmini__r50_outputs_input.2__random", "simba__invalid_fanout"])
def test_real_timeloop_agrees_with_builtin(case):
    problem, arch, mapping = load_case(case)
    real = run_timeloop(mapping, problem, arch)
    assert differences(evaluate(mapping, problem, arch), real) == []


# ---- property: any mapping survives write -> read ------------------------------------------
LAYERS = [Problem.conv2d(K=32, C=16, P=14, Q=14, R=3, S=3, stride=2),
          Problem.matmul(M=48, N=32, K=64),
          Problem.conv2d(K=1, C=1, P=8, Q=8, R=3, S=3, groups=8)]


@st.composite
def mappings(draw):
    layer = draw(st.sampled_from(LAYERS))
    arch = preset(draw(st.sampled_from(["simba", "gemmini"])))
    slots = [(i, k) for i in range(arch.num_levels) for k in ("temporal", "spatial_x",
                                                              "spatial_y")
             if k == "temporal" or (k == "spatial_x" and arch.fanout(i)[0] > 1)
             or (k == "spatial_y" and arch.fanout(i)[1] > 1)]
    levels = [LevelMapping() for _ in arch.levels]
    for d, size in layer.sizes:
        n, p = size, 2
        while n > 1:  # each prime factor to a random slot
            while n % p:
                p += 1
            n //= p
            i, kind = draw(st.sampled_from(slots))
            other = "spatial_y" if kind == "spatial_x" else "spatial_x"
            if kind != "temporal" and d in getattr(levels[i], other):
                kind = other  # one spatial axis per dimension, as in Timeloop's map files
            factors = getattr(levels[i], kind)
            factors[d] = factors.get(d, 1) * p
    for lv in levels:
        lv.order = tuple(draw(st.permutations(layer.dims)))
        lv.keeps = frozenset(draw(st.sets(st.sampled_from(layer.tensor_names))))
    levels[-1].keeps = frozenset(layer.tensor_names)
    return layer, arch, Mapping(levels)


@settings(max_examples=80, deadline=None)
@given(mappings())
def test_any_mapping_round_trips_through_a_map_file(case):
    layer, arch, mapping = case
    again = read_mapping(yaml.safe_load(mapping_yaml(mapping, layer, arch)), layer, arch)
    same_mapping(mapping, again, layer.dims)
    assert differences(evaluate(mapping, layer, arch), evaluate(again, layer, arch)) == []
