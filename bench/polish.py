#!/usr/bin/env python3
"""What the exact-model polish (`tvm_cosa.polish`) changes, and what it costs.

For each (layer, architecture, objective): the MILP's schedule and the polished one, both
evaluated by the built-in cost model (= timeloop-model): cycles and energy before / after, the
moves taken, cost-model evaluations and the polish's time. Cases: the 24 ResNet-50 layers on the
presets named by --arch, and --random N (layer, architecture) pairs of `tvm_cosa.timeloop.fuzz`
(the same pairs as bench/vs_mapper.py and bench/solve_time.py).

    python bench/polish.py --arch simba gemmini
    python bench/polish.py --arch --random 30 --objectives latency energy
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tvm_cosa import Problem, load_architecture, preset, schedule  # noqa: E402
from tvm_cosa.errors import InfeasibleError  # noqa: E402
from tvm_cosa.formulation import Objective  # noqa: E402
from tvm_cosa.timeloop.fuzz import random_case  # noqa: E402

WORKLOADS = ROOT / "tests" / "data" / "workloads" / "resnet50"


def cases(arch_names, random_count, start=5000):
    for name in arch_names:
        arch = preset(name)
        for path in sorted(WORKLOADS.glob("*.yaml")):
            yield arch, Problem.from_yaml(path)
    seed = start
    for _ in range(random_count):
        files, problem = random_case(seed, varied=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arch = load_architecture(files.arch, files.mapspace, name=f"random{seed}")
        yield arch, problem.renamed(f"seed{seed}")
        seed += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", nargs="*", default=["simba", "gemmini"])
    ap.add_argument("--random", type=int, default=0)
    ap.add_argument("--objectives", nargs="+", default=["default"],
                    choices=["default", "latency", "energy"])
    args = ap.parse_args()
    print("| arch | layer | objective | cycles before -> after | energy before -> after "
          "| moves | evaluations | polish s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for arch, problem in cases(args.arch, args.random):
        for name in args.objectives:
            try:
                mapping = schedule(problem, arch, objective=Objective.preset(name),
                                   solver="highs")
            except InfeasibleError:
                continue
            r = mapping.info["polish"]
            rows.append(r)
            print(f"| {arch.name} | {problem.name} | {name} | {r['cycles_before']} -> "
                  f"{r['cycles']} | {r['energy_before_pJ']:.4g} -> {r['energy_pJ']:.4g} | "
                  f"{r['moves']} | {r['evaluations']} | {r['time_s']:.3f} |", flush=True)
    if not rows:
        return
    changed = [r for r in rows if r["moves"]]
    cycles = [r["cycles"] / r["cycles_before"] for r in rows]
    energy = [r["energy_pJ"] / r["energy_before_pJ"] for r in rows]
    print(f"\n{len(rows)} schedules, {len(changed)} changed; cycles after / before: "
          f"min {min(cycles):.3f}, max {max(cycles):.3f}; energy after / before: min "
          f"{min(energy):.3f}, max {max(energy):.3f}; polish time median "
          f"{statistics.median(r['time_s'] for r in rows):.3f} s, max "
          f"{max(r['time_s'] for r in rows):.3f} s")


if __name__ == "__main__":
    main()
