"""The persistent schedule cache and de-duplication: identical layers are solved once, a second
compile of the same model solves nothing, and the key follows problem, architecture, objective
and solver version."""

import json
import math
import os
import subprocess
import sys

import pytest

tvm = pytest.importorskip("tvm")
import tvm_ffi  # noqa: E402

import tvm_cosa  # noqa: E402
from tvm_cosa.models import bert_encoder, tiny_cnn  # noqa: E402
from tvm_cosa.relax import CoSAPass, ScheduleCache  # noqa: E402
from tvm_cosa.relax import pass_ as pass_module  # noqa: E402
from tvm_cosa.relax.cache import answers, cache_key, default_cache_dir  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx  # noqa: E402
from tvm_cosa.scheduler import Objective  # noqa: E402
from tvm_cosa.solvers import DEFAULT_TIME_LIMIT  # noqa: E402


@pytest.fixture(scope="module")
def tiny_mod():
    return import_onnx(tiny_cnn())


def run(mod, arch="simba", **options):
    cosa = CoSAPass(arch, **options)
    out = cosa(mod)
    return cosa.report, out


def test_identical_layers_are_solved_once():
    # two encoder layers of the same shape: 16 matmuls, 5 distinct shapes
    report, _ = run(import_onnx(bert_encoder(seq_len=8, hidden=32, heads=2, layers=2)),
                    cache=False)
    assert len(report.records) == 16 and report.unique_layers == 5 and report.solved == 5
    firsts = {r.index for r in report.records if r.same_as is None}
    for r in report.records:
        if r.same_as is not None:
            first = report.records[r.same_as]
            assert r.same_as in firsts and r.problem == first.problem
            assert r.schedule == first.schedule and r.solve_time_s == 0.0


def test_second_compile_solves_nothing(tiny_mod, tmp_path):
    cold, cold_mod = run(tiny_mod, cache=tmp_path)
    assert cold.solved == 6 and cold.cache == {"hits": 0, "misses": 6, "path": str(tmp_path)}
    assert len(ScheduleCache(tmp_path)) == 6
    warm, warm_mod = run(tiny_mod, cache=tmp_path)
    assert warm.solved == 0 and warm.cache["hits"] == 6 and warm.cache["misses"] == 0
    assert all(r.cached and r.status == "scheduled" for r in warm.records)
    assert [r.schedule for r in warm.records] == [r.schedule for r in cold.records]
    assert [r.cycles for r in warm.records] == [r.cycles for r in cold.records]
    assert tvm_ffi.structural_equal(warm_mod, cold_mod)


def test_cache_is_keyed_by_architecture_objective_and_solver_version(tiny_mod, tmp_path,
                                                                     monkeypatch):
    run(tiny_mod, cache=tmp_path)
    other_arch, _ = run(tiny_mod, "gemmini", cache=tmp_path)
    assert other_arch.cache["hits"] == 0 and other_arch.solved == 6
    other_objective, _ = run(tiny_mod, cache=tmp_path, objective=Objective.latency_only())
    assert other_objective.cache["hits"] == 0
    monkeypatch.setattr(pass_module, "solver_version", lambda solver: "highs 99.0.0")
    new_solver, _ = run(tiny_mod, cache=tmp_path)
    assert new_solver.cache["hits"] == 0 and new_solver.solved == 6


def test_key_is_the_same_in_every_process():
    problem = tvm_cosa.Problem.conv2d(K=64, C=32, P=14, Q=14, R=3, S=3)
    arch = tvm_cosa.preset("simba")
    here = cache_key(problem, arch, Objective().key(), "auto", "v1")
    code = ("import tvm_cosa; from tvm_cosa.relax.cache import cache_key; "
            "from tvm_cosa.scheduler import Objective; "
            "print(cache_key(tvm_cosa.Problem.conv2d(K=64, C=32, P=14, Q=14, R=3, S=3), "
            "tvm_cosa.preset('simba'), Objective().key(), 'auto', 'v1'))")
    for seed in ("1", "2"):  # frozensets in the architecture iterate in hash-seed order
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                                 tvm_cosa.__file__)))
        assert out.stdout.strip() == here
    assert cache_key(problem.renamed("other"), arch, Objective().key(), "auto", "v1") == here
    assert cache_key(problem, arch, Objective().key(), "auto", "v2") != here


def test_unreadable_entry_is_a_miss_and_is_rewritten(tiny_mod, tmp_path):
    run(tiny_mod, cache=tmp_path)
    files = sorted(tmp_path.glob("*/*.json"))
    files[0].write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        report, _ = run(tiny_mod, cache=tmp_path)
    assert report.solved == 1 and report.cache["hits"] == 5
    assert json.loads(files[0].read_text())["mapping"]["levels"]


def test_default_directory_follows_the_environment(tiny_mod, tmp_path, monkeypatch):
    monkeypatch.setenv("TVM_COSA_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    run(tiny_mod)  # cache=None: the default directory
    assert len(ScheduleCache(tmp_path / "env-cache")) == 6


def test_cache_false_writes_nothing(tiny_mod, tmp_path, monkeypatch):
    monkeypatch.setenv("TVM_COSA_CACHE", str(tmp_path))
    report, _ = run(tiny_mod, cache=False)
    assert report.cache["path"] is None and not list(tmp_path.iterdir())


# ---- a schedule is reused only by a request it answers (time limit, gap) ---------------------
def test_answers_rules():
    optimal = {"status": "optimal", "gap": 0.0, "time_limit": None}
    assert answers(optimal, None, None) and answers(optimal, 5.0, 0.1)
    loose = {"status": "optimal", "gap": 0.05, "time_limit": None}
    assert not answers(loose, None, None) and answers(loose, None, 0.05)
    assert not answers(loose, None, 0.01)
    limited = {"status": "time_limit", "gap": 0.2, "time_limit": 2.0}
    assert not answers(limited, None, None)  # no limit asked: the default budget is longer
    assert not answers(limited, 10.0, None)  # a longer limit may do better
    assert answers(limited, 2.0, None) and answers(limited, 1.0, 0.5)
    assert not answers(None, None, None) and not answers({"status": "error"}, None, None)
    budget = {"status": "time_limit", "gap": 0.01, "time_limit": DEFAULT_TIME_LIMIT}
    assert answers(budget, None, None)  # stopped by the default budget: asked for it again
    assert not answers(budget, math.inf, None)  # the full proof asked: solve again


@pytest.fixture
def stopped_by_time_limit(monkeypatch):
    """schedule() as if every solve had hit its time limit with a 30 % gap left."""
    import tvm_cosa.scheduler as scheduler

    real = scheduler.schedule

    def stopped(*args, **kwargs):
        mapping = real(*args, **kwargs)
        mapping.info.update(status="time_limit", gap=0.3)
        return mapping

    monkeypatch.setattr(scheduler, "schedule", stopped)
    return monkeypatch


def test_time_limited_schedule_is_not_reused_for_a_longer_limit(tiny_mod, tmp_path,
                                                                 stopped_by_time_limit):
    first, _ = run(tiny_mod, cache=tmp_path, jobs=1, time_limit=5.0)
    assert first.solved == 6 and all(r.time_limited for r in first.scheduled)
    assert "(time limit)" in first.table() and "stopped at the time limit" in first.summary()
    again, _ = run(tiny_mod, cache=tmp_path, jobs=1, time_limit=5.0)  # same limit: reused
    assert again.cache["hits"] == 6 and again.solved == 0
    assert all(r.time_limited for r in again.scheduled)
    stopped_by_time_limit.undo()  # the solver now reaches optimality
    unlimited, _ = run(tiny_mod, cache=tmp_path, jobs=1, time_limit=math.inf)
    assert unlimited.cache["hits"] == 0 and unlimited.solved == 6
    assert not any(r.time_limited for r in unlimited.scheduled)
    assert "(time limit)" not in unlimited.table()
    warm, _ = run(tiny_mod, cache=tmp_path, jobs=1, time_limit=5.0)  # optimal answers a limit too
    assert warm.cache["hits"] == 6 and warm.solved == 0


def test_schedule_solved_to_a_looser_gap_is_solved_again(tiny_mod, tmp_path, monkeypatch):
    import tvm_cosa.scheduler as scheduler

    real = scheduler.schedule

    def loose(*args, **kwargs):
        mapping = real(*args, **kwargs)
        mapping.info["gap"] = 0.2
        return mapping

    monkeypatch.setattr(scheduler, "schedule", loose)
    run(tiny_mod, cache=tmp_path, jobs=1, mip_gap=0.25)
    monkeypatch.undo()
    same_gap, _ = run(tiny_mod, cache=tmp_path, jobs=1, mip_gap=0.25)
    assert same_gap.cache["hits"] == 6
    tighter, _ = run(tiny_mod, cache=tmp_path, jobs=1)
    assert tighter.cache["hits"] == 0 and tighter.solved == 6


def test_unpolished_schedules_have_their_own_cache_entries(tiny_mod, tmp_path):
    """CoSAPass(polish=False) hands back the MILP's schedules as solved: they never answer a
    request for polished ones, nor the other way round."""
    plain, _ = run(tiny_mod, cache=tmp_path, jobs=1, polish=False)
    assert plain.solved == 6 and plain.cache["hits"] == 0
    polished, _ = run(tiny_mod, cache=tmp_path, jobs=1)
    assert polished.solved == 6 and polished.cache["hits"] == 0
    again, _ = run(tiny_mod, cache=tmp_path, jobs=1, polish=False)
    assert again.cache["hits"] == 6 and again.solved == 0
