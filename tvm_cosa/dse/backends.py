"""Where sweep tasks run: a local process pool, or Ray (a local runtime or an existing cluster).

Both yield each task's outcome as soon as it finishes, in completion order; the driver keys
outcomes by task id, so the order does not change the results.

Dead workers: the local pool keeps at most 2 x jobs tasks in flight; when a worker dies the pool
breaks, the tasks in flight are charged one attempt and resubmitted to a fresh pool, and a task
that has been in flight at `max_retries` + 1 deaths is reported as a solver failure. Ray retries a
task whose worker died itself (`max_retries`); when it gives up, the task is reported the same way.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import sys
from concurrent.futures.process import BrokenProcessPool

from ..errors import InputError
from .tasks import run_task, worker_failure

DEFAULT_RETRIES = 2


def _mp_context():
    """fork on Linux (fast: workers run the scheduler only, no TVM); spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context(
        "fork" if "fork" in methods and sys.platform.startswith("linux") else "spawn")


class LocalBackend:
    """`jobs` worker processes on this machine. Nothing to install or start."""

    def __init__(self, jobs: int = 2, max_retries: int = DEFAULT_RETRIES):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise InputError(f"jobs must be a positive integer, got {jobs!r}", field="jobs")
        self.jobs = jobs
        self.max_retries = max_retries
        self.retried = 0
        self.description = f"local pool of {jobs} process{'es' if jobs > 1 else ''}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, tasks):
        attempts = {task.id: 0 for task in tasks}
        queue = list(reversed(tasks))  # pop() takes them in the given order
        window = 2 * self.jobs
        while queue:
            pool = cf.ProcessPoolExecutor(min(self.jobs, len(queue)), mp_context=_mp_context())
            in_flight = {}
            broken = False
            try:
                while queue or in_flight:
                    while queue and len(in_flight) < window and not broken:
                        task = queue.pop()
                        in_flight[pool.submit(run_task, task)] = task
                    if not in_flight:
                        break
                    done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        task = in_flight.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            broken = True
                            attempts[task.id] += 1
                            if attempts[task.id] > self.max_retries:
                                yield worker_failure(task, f"the worker died {attempts[task.id]} "
                                                           "times running this task")
                            else:
                                self.retried += 1
                                queue.append(task)
                        except Exception as err:  # noqa: BLE001 - e.g. unpicklable
                            yield worker_failure(task, f"worker error: {err!r}")
                    if broken and not in_flight:
                        break  # every task of the broken pool is back in the queue
            finally:
                pool.shutdown(wait=not broken, cancel_futures=True)


class RayBackend:
    """Ray tasks: `address=None` starts a local runtime with `num_cpus` CPUs, an address
    ("auto", "HOST:PORT") joins a running cluster. A runtime already initialised in this process
    is used as it is and left running."""

    def __init__(self, address=None, num_cpus=None, max_retries: int = DEFAULT_RETRIES):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError("--ray needs Ray: pip install 'tvm_cosa[ray]'", field="ray") from None
        self.address = address or None
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.retried = 0
        self.started = False
        self.description = ""

    def __enter__(self):
        import ray

        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False)
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
            self.started = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        self.description = (f"Ray, {nodes} node{'s' if nodes != 1 else ''}, {cpus} CPUs"
                            + (f" at {self.address}" if self.address else " (local)"))
        return self

    def __exit__(self, *exc):
        if self.started:
            import ray

            ray.shutdown()
        return False

    def run(self, tasks):
        import ray

        remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(run_task)
        refs = {remote.remote(task): task for task in tasks}
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=min(len(refs), 64), timeout=0.2)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as err:  # noqa: BLE001 - WorkerCrashedError and kin
                        yield worker_failure(task, f"Ray gave up on the task after "
                                                   f"{self.max_retries} retries: "
                                                   f"{type(err).__name__}: {err}")
        finally:
            for ref in refs:  # interrupted: do not leave work running on the cluster
                ray.cancel(ref, force=True)


def make_backend(jobs: int = 2, ray=None, max_retries: int = DEFAULT_RETRIES):
    """ray: None or False (local pool), True or "" (start a local Ray runtime with `jobs` CPUs),
    or an address string (join that cluster)."""
    if ray is None or ray is False:
        return LocalBackend(jobs, max_retries)
    address = None if ray is True or ray in ("", "local") else str(ray)
    return RayBackend(address=address, num_cpus=jobs, max_retries=max_retries)
