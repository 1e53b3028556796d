#!/usr/bin/env python3
"""Design-space sweep throughput: ResNet-50 and the BERT-shaped encoder over Gemmini configurations.

Runs the same sweep (every task solved: a fresh schedule cache per run) on
  1. a local pool of 1 process, 2. a local pool of 2 processes, 3. a local Ray runtime with 2
CPUs (started before the clock; its start-up is printed apart), then once more warm (everything
from the cache). Prints wall time, tasks per second, the share of worker time spent in the MILP
solver, and a model of the wall time on N nodes built from the measured task times:

    T(N) = T_load + max(sum(t) / (N x cores x efficiency), t_max, tasks x d_driver)

T_load: importing the models and extracting their layers (serial, in the driver); sum(t), t_max:
the task times of the 1-process run; efficiency: what the 2-CPU Ray run achieved of its 2 CPUs;
d_driver: the driver's own time per finished task (storing it in the cache). The term that wins
is what limits the sweep at that size.

    python bench/sweep.py                 # 54 configurations (the full grid below), both models
    python bench/sweep.py --small         # 4 configurations, smaller models: a quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa.dse import load_model, load_space, sweep  # noqa: E402

FULL_SPACE = {"base": "gemmini", "params": {
    "dim": [8, 16, 32], "scratchpad_kib": [64, 128, 256], "accumulator_kib": [16, 32, 64],
    "dram_bandwidth": [5.75, 11.5]}}
SMALL_SPACE = {"base": "gemmini", "params": {"dim": [8, 16], "scratchpad_kib": [64, 256]}}


def models(small: bool):
    from tvm_cosa.models import bert_encoder, resnet50

    began = time.perf_counter()
    if small:
        loaded = [load_model(resnet50(image_size=64, width=16), name="resnet50-small"),
                  load_model(bert_encoder(seq_len=32, hidden=128, heads=2), name="bert-small")]
    else:
        loaded = [load_model(resnet50(), name="resnet50"),
                  load_model(bert_encoder(), name="bert_encoder")]
    return loaded, time.perf_counter() - began


def describe(model) -> str:
    return f"{model.name}: {model.num_layers} layers, {len(model.layers)} unique"


def one_run(label, loaded, space, **kw):
    with tempfile.TemporaryDirectory(prefix="tvm_cosa_sweep_bench_") as cache:
        result = sweep(loaded, space, cache=cache, progress=False, plot=False, **kw)
        warm = None
        if kw.get("ray") is None and kw.get("jobs") == 2:
            warm = sweep(loaded, space, cache=cache, progress=False, plot=False, **kw)
    s = result.stats
    workers = kw.get("jobs", 1)
    task_wall = sum(t for t, _ in result.task_times)
    solve = sum(t for _, t in result.task_times)
    row = {"label": label, "wall": s["wall_s"], "tasks": s["solved"],
           "rate": s["solved"] / s["wall_s"], "solve_share": solve / (s["wall_s"] * workers),
           "busy_share": task_wall / (s["wall_s"] * workers), "driver_s": s["driver_s"],
           "times": [t for t, _ in result.task_times], "result": result}
    if warm is not None:
        row["warm"] = warm.stats
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="4 configurations, small models")
    parser.add_argument("--solver", default="auto", choices=("auto", "highs", "gurobi"))
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    parser.add_argument("--out", default=None, help="write the 2-process run's results here")
    args = parser.parse_args()

    space = load_space(SMALL_SPACE if args.small else FULL_SPACE)
    loaded, load_s = models(args.small)
    unique = len({k for m in loaded for k in m.layers})
    print(f"{len(space.points)} Gemmini configurations x {len(loaded)} models "
          f"({', '.join(describe(m) for m in loaded)}): {len(space.points) * unique} tasks; "
          f"import + extraction {load_s:.1f} s")

    runs = [one_run("local, 1 process", loaded, space, jobs=1, solver=args.solver),
            one_run("local, 2 processes", loaded, space, jobs=2, solver=args.solver)]
    ray_start = None
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            print("Ray is not installed (pip install 'tvm_cosa[ray]'): no Ray run")
        else:
            began = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray_start = time.perf_counter() - began
            runs.append(one_run("Ray, local, 2 CPUs", loaded, space, jobs=2, ray=True,
                                solver=args.solver))
            ray.shutdown()

    print("\n| run | wall | tasks/s | worker time in the solver | workers busy | "
          "driver per task |\n| --- | --- | --- | --- | --- | --- |")
    for r in runs:
        per_task_ms = 1000 * r["driver_s"] / max(1, r["tasks"])
        print(f"| {r['label']} | {r['wall']:.1f} s | {r['rate']:.1f} | "
              f"{100 * r['solve_share']:.0f} % | {100 * r['busy_share']:.0f} % | "
              f"{per_task_ms:.2f} ms |")
    warm = runs[1].get("warm")
    if warm:
        print(f"| warm (all from the cache), 2 processes | {warm['wall_s']:.1f} s | - | "
              f"{warm['solved']} solved | - | - |")
    if ray_start is not None:
        print(f"\nRay start-up (ray.init, num_cpus=2), not in the wall time above: "
              f"{ray_start:.1f} s")

    base = runs[0]["result"]
    ref = base.comparable()
    same = all(r["result"].comparable() == ref for r in runs[1:])
    print(f"results identical across runs: {same}")

    # ---- the N-node model ---------------------------------------------------------------------
    times = runs[0]["times"]
    total, longest, tasks = sum(times), max(times), len(times)
    two_cpu = runs[-1]
    efficiency = min(1.0, (total / two_cpu["wall"]) / 2)  # of 2 CPUs (Ray run, else 2 processes)
    d_driver = max(r["driver_s"] / max(1, r["tasks"]) for r in runs)
    cores = 2
    print(f"\nN-node model: sum of task times {total:.1f} s (1-process run), longest task "
          f"{longest:.2f} s, {tasks} tasks, {cores} cores per node at {100 * efficiency:.0f} % "
          f"efficiency ({two_cpu['label']}), driver {1000 * d_driver:.2f} ms per task, "
          f"import + extraction {load_s:.1f} s")
    print("\n| nodes | modelled wall | limited by |\n| --- | --- | --- |")
    for nodes in (1, 2, 4, 8, 16, 32, 64, 128):
        terms = {"worker CPUs": total / (nodes * cores * efficiency),
                 "the longest task": longest,
                 "the driver (one result at a time)": tasks * d_driver}
        limit = max(terms, key=terms.get)
        print(f"| {nodes} | {load_s + terms[limit]:.1f} s | {limit} "
              f"(+ {load_s:.1f} s import, serial) |")

    print("\nPareto-optimal configurations (2-process run):")
    print(runs[1]["result"].table())
    if args.out:
        from tvm_cosa.dse import results

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = runs[1]["result"]
        results.write_csv(result.rows, result.space.param_names, out / "results.csv")
        results.plot(result.rows, out / "pareto.png",
                     title=f"{len(space.points)} Gemmini configurations")
        print(f"wrote {out / 'results.csv'} and {out / 'pareto.png'}")


if __name__ == "__main__":
    main()
