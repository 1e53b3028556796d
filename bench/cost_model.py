"""Benchmark of the built-in cost model.

1. Speed: evaluations per second of `tvm_cosa.cost_model.evaluate` on ResNet-50 layers on
   Simba and Gemmini (the Timeloop reference maps of tests/data/timeloop-reference), in this
   one process pinned to one core. Target: >= 10,000 evaluations per second.
2. Quality: every ResNet-50 layer (tests/data/workloads/resnet50) scheduled by
   `tvm_cosa.scheduler.schedule`, evaluated: cycles and energy per layer against the lower bound
   `lower_bound_cycles` = max(MACs / MAC count, compulsory outermost-level traffic / its
   bandwidth).

    /work/venv/bin/python bench/cost_model.py [--arch simba] [--layers N] [--time-limit S]
        [--skip-schedule] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa import Problem, load_architecture, preset  # noqa: E402
from tvm_cosa.cost_model import evaluate, lower_bound_cycles  # noqa: E402
from tvm_cosa.timeloop import read_mapping  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "timeloop-reference"
LAYERS = ROOT / "tests" / "data" / "workloads" / "resnet50"
TARGET = 10_000


def pin_to_one_core():
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return True
    return False


def speed(repeat: int):
    print("== evaluations per second (one core) ==")
    cases = sorted(p.name for p in REFERENCE.iterdir()
                   if (p / "stats.txt").is_file() and "r50" in p.name)
    rates = []
    print(f"{'reference map':<52} {'evals/s':>9} {'us/eval':>8}")
    for case in cases:
        folder = REFERENCE / case
        problem = Problem.from_yaml(folder / "prob.yaml")
        arch = load_architecture(folder / "arch.yaml")
        mapping = read_mapping(folder / "map.yaml", problem, arch)
        evaluate(mapping, problem, arch)  # warm the per-(problem, arch) cache
        number = 300
        best = min(timeit.repeat(lambda: evaluate(mapping, problem, arch), number=number,
                                 repeat=repeat)) / number
        rates.append(1 / best)
        print(f"{case:<52} {1 / best:>9.0f} {best * 1e6:>8.1f}")
    median = statistics.median(rates)
    print(f"median {median:.0f} evals/s, slowest {min(rates):.0f}, fastest {max(rates):.0f} "
          f"over {len(rates)} ResNet-50 maps; target >= {TARGET}: "
          f"{'met' if median >= TARGET else 'NOT met'} (median)")
    return median


def quality(arch_name: str, limit, time_limit):
    print(f"\n== ResNet-50 layers scheduled by tvm_cosa.scheduler on {arch_name} ==")
    try:
        from tvm_cosa.scheduler import schedule
    except ImportError as err:
        print(f"tvm_cosa.scheduler is not available ({err}); skipping the per-layer table")
        return
    arch = preset(arch_name)
    paths = sorted(LAYERS.glob("*.yaml"))[:limit]
    head = (f"{'layer':<22} {'MACs':>11} {'cycles':>10} {'bound':>10} {'x bound':>8} "
            f"{'util':>5} {'energy uJ':>10} {'pJ/MAC':>7} {'solve s':>8}")
    print(head)
    total_cycles = total_bound = 0
    total_energy = 0.0
    for path in paths:
        problem = Problem.from_yaml(path)
        bound = lower_bound_cycles(problem, arch)
        began = time.perf_counter()
        try:
            mapping = schedule(problem, arch, time_limit=time_limit)
        except Exception as err:  # report and go on: one layer must not stop the table
            print(f"{problem.name:<22} {problem.macs:>11} no schedule: {err}")
            continue
        solve = time.perf_counter() - began
        ev = evaluate(mapping, problem, arch)
        if not ev.valid:
            print(f"{problem.name:<22} {problem.macs:>11} invalid schedule: {ev.error}")
            continue
        total_cycles += ev.cycles
        total_bound += bound
        total_energy += ev.energy_pJ
        print(f"{problem.name:<22} {problem.macs:>11} {ev.cycles:>10} {bound:>10} "
              f"{ev.cycles / bound:>8.2f} {ev.utilization:>5.2f} {ev.energy_pJ / 1e6:>10.2f} "
              f"{ev.energy_pJ / problem.macs:>7.3f} {solve:>8.2f}")
    if total_bound:
        note = " (energies estimated)" if ev.energy_estimated else ""
        print(f"{'total':<22} {'':>11} {total_cycles:>10} {total_bound:>10} "
              f"{total_cycles / total_bound:>8.2f} {'':>5} {total_energy / 1e6:>10.2f}{note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="simba", choices=["simba", "gemmini"])
    parser.add_argument("--layers", type=int, default=None, help="only the first N layers")
    parser.add_argument("--time-limit", type=float, default=60.0, help="per-layer solve limit")
    parser.add_argument("--skip-schedule", action="store_true", help="speed only")
    parser.add_argument("--repeat", type=int, default=5, help="timing repeats (best is kept)")
    args = parser.parse_args()
    pinned = pin_to_one_core()
    print(f"python {sys.version.split()[0]}, pinned to one core: {pinned}")
    speed(args.repeat)
    if not args.skip_schedule:
        quality(args.arch, args.layers, args.time_limit)


if __name__ == "__main__":
    main()
