"""The same sweep on a local Ray runtime (2 CPUs) and on the local process pool gives equal
results; a Ray worker that dies is retried. One Ray runtime serves the whole module (it takes
seconds to start). Skipped when Ray is not installed (pip install 'tvm_cosa[ray]')."""

import pytest

ray = pytest.importorskip("ray")

from tvm_cosa.dse import sweep  # noqa: E402
from tvm_cosa.dse.tasks import CRASH_ONCE_ENV  # noqa: E402

from test_sweep import SPACE, write_layers  # noqa: E402


@pytest.fixture(scope="module")
def ray_runtime():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    return write_layers(tmp_path_factory.mktemp("models") / "tinynet")


def run(layers, **kw):
    return sweep([layers], SPACE, solver="highs", progress=False, **kw)


def test_ray_and_local_pool_give_equal_results(ray_runtime, layers, tmp_path):
    on_ray = run(layers, ray=True, jobs=2, cache=tmp_path / "ray-cache", out=tmp_path / "ray")
    local = run(layers, jobs=2, cache=False)
    assert on_ray.stats["solved"] == 8 and "Ray" in on_ray.stats["backend"]
    assert on_ray.comparable() == local.comparable()
    assert all(r["status"] == "ok" for r in on_ray.rows)
    assert (tmp_path / "ray" / "results.csv").is_file()
    # results stored by the Ray run answer the next run: nothing is solved again
    assert run(layers, ray=True, cache=tmp_path / "ray-cache").stats["solved"] == 0
    assert ray.is_initialized()  # a runtime the sweep did not start is left running


def test_ray_retries_a_dead_worker(ray_runtime, layers, tmp_path, monkeypatch):
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    result = run(layers, ray=True, cache=False)
    assert marker.exists()  # a Ray worker process exited in the middle of a task
    assert result.stats["worker_failures"] == 0
    assert all(r["status"] == "ok" for r in result.rows)
    monkeypatch.delenv(CRASH_ONCE_ENV)
    assert result.comparable() == run(layers, jobs=2, cache=False).comparable()
