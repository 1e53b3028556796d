#!/usr/bin/env python3
"""Solve time and schedule quality on the 24 ResNet-50 layers, on simba and gemmini.

Per layer: model size (variables / constraints), solver time and wall time (model building,
solve, validity check, exact-model polish), objective, and (with the built-in cost model)
cycles against the lower bound max(MACs / MAC count, compulsory DRAM traffic / DRAM
bandwidth), against the reachable bound (compute at the best spatial use the fanouts' allowed
dims permit), and energy; on simba
also the original CoSA's energy and cycles / bound where the Timeloop reference has them
(tests/data/timeloop-reference, `cosa-original` cases).

Targets (HiGHS, 2 cores): median solve time < 1 s and maximum < 10 s per layer; cycles within
1.1x of the bound on every layer, geometric mean within 1.01x; less energy than the original
CoSA on average.

    python bench/solve_time.py                       # both architectures, HiGHS
    python bench/solve_time.py --arch simba --solver gurobi --objective cosa
    python bench/solve_time.py --arch simba --random 50   # also 50 random (layer, arch) pairs
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa import Problem, preset  # noqa: E402
from tvm_cosa.formulation import best_spatial_product  # noqa: E402
from tvm_cosa.scheduler import Objective, build_model, schedule  # noqa: E402

WORKLOADS = ROOT / "tests" / "data" / "workloads" / "resnet50"
REFERENCE = ROOT / "tests" / "data" / "timeloop-reference"
OBJECTIVES = ("default", "cosa", "latency", "energy")


def original_cosa_results() -> dict:
    """layer name -> (cycles, energy pJ) of the original CoSA's schedule, measured by Timeloop."""
    index = REFERENCE / "index.csv"
    if not index.exists():
        return {}
    with open(index) as f:
        return {row["layer"]: (int(row["cycles"]), float(row["energy_pJ"]))
                for row in csv.DictReader(f)
                if row["kind"] == "cosa-original" and row["arch"] == "simba"}


def evaluator():
    try:
        from tvm_cosa.cost_model import evaluate, lower_bound_cycles
    except ImportError:
        return None
    return evaluate, lower_bound_cycles


def run(arch_name, solver, objective, threads, time_limit, layers):
    arch = preset(arch_name)
    cost = evaluator()
    reference = original_cosa_results() if arch_name == "simba" else {}
    print(f"\n== {arch_name}: solver {solver}, objective {objective.name}, threads {threads}")
    header = (f"{'layer':20s} {'vars':>5s} {'cons':>5s} {'time s':>7s} {'wall s':>7s} "
              f"{'status':9s} {'objective':>10s}")
    if cost:
        header += (f" {'cycles':>9s} {'bound':>9s} {'x bound':>7s} {'x reach':>7s} "
                   f"{'energy uJ':>10s}")
        if reference:
            header += f" {'orig uJ':>9s} {'orig x':>7s}"
    print(header)
    rows = []
    for path in layers:
        problem = Problem.from_yaml(path)
        began = time.perf_counter()
        mapping = schedule(problem, arch, objective=objective, solver=solver, threads=threads,
                           time_limit=time_limit)
        wall = time.perf_counter() - began
        info = mapping.info
        row = {"layer": problem.name, "time": info["solve_time_s"], "wall": wall,
               "solver": info["solver"]}
        line = (f"{problem.name:20s} {info['num_vars']:5d} {info['num_constraints']:5d} "
                f"{info['solve_time_s']:7.2f} {wall:7.2f} {info['status']:9s} "
                f"{info['objective']:10.4f}")
        if cost:
            evaluate, lower_bound = cost
            ev = evaluate(mapping, problem, arch)
            bound = lower_bound(problem, arch)
            reach = reachable_bound(problem, arch, bound)
            row.update(ratio=ev.cycles / bound, reach=ev.cycles / reach, energy=ev.energy_pJ)
            line += (f" {ev.cycles:9d} {bound:9d} {ev.cycles / bound:7.3f} "
                     f"{ev.cycles / reach:7.3f} {ev.energy_pJ / 1e6:10.2f}")
            if problem.name in reference:
                orig_cycles, orig_energy = reference[problem.name]
                row.update(orig_energy=orig_energy, orig_ratio=orig_cycles / bound)
                line += f" {orig_energy / 1e6:9.2f} {orig_cycles / bound:7.3f}"
        print(line, flush=True)
        rows.append(row)
    summarize(rows)
    return rows


def reachable_bound(problem, arch, bound):
    """The bound with compute at the best spatial use the fanouts' allowed dims permit
    (gemmini's X axis takes only the reduction dim: conv1's C=3 uses 3 of 16 rows)."""
    best = best_spatial_product(build_model(problem, arch))
    return max(bound, math.ceil(problem.macs / best))


def summarize(rows):
    times = [r["time"] for r in rows]
    walls = [r["wall"] for r in rows]
    print(f"solver time: median {statistics.median(times):.2f} s, max {max(times):.2f} s; "
          f"wall (build + solve + check + polish): median {statistics.median(walls):.2f} s, max "
          f"{max(walls):.2f} s ({', '.join(sorted({r['solver'] for r in rows}))})")
    if "ratio" in rows[0]:
        ratios = [r["ratio"] for r in rows]
        geo = math.exp(statistics.fmean(math.log(x) for x in ratios))
        print(f"cycles / bound: geometric mean {geo:.4f}, max {max(ratios):.3f}, "
              f"{sum(x <= 1.1 for x in ratios)}/{len(ratios)} layers within 1.1x")
        reach = [r["reach"] for r in rows]
        print(f"cycles / reachable bound: geometric mean "
              f"{math.exp(statistics.fmean(math.log(x) for x in reach)):.4f}, max {max(reach):.3f}")
        paired = [r for r in rows if "orig_energy" in r]
        if paired:
            ratio = [r["energy"] / r["orig_energy"] for r in paired]
            geo_e = math.exp(statistics.fmean(math.log(x) for x in ratio))
            total = (sum(r["energy"] for r in paired)
                     / sum(r["orig_energy"] for r in paired))
            print(f"energy vs the original CoSA on {len(paired)} layers: geometric mean "
                  f"{geo_e:.3f}x, total {total:.3f}x; "
                  f"original cycles / bound there: geometric mean "
                  f"{math.exp(statistics.fmean(math.log(r['orig_ratio']) for r in paired)):.3f}")


def run_random(count, solver, objective, threads, time_limit, start=0):
    """Solve time on random (layer, architecture) pairs of `tvm_cosa.timeloop.fuzz` (Timeloop
    v0.3 / tree files, 2-5 on-chip levels, 2-D meshes, random bypass)."""
    from tvm_cosa.architecture_yaml import load_architecture
    from tvm_cosa.errors import InfeasibleError
    from tvm_cosa.timeloop.fuzz import random_case

    print(f"\n== {count} random (layer, architecture) pairs (seeds {start}..), solver {solver}, "
          f"objective {objective.name}, threads {threads}")
    print(f"{'seed':>5s} {'levels':>6s} {'MACs':>5s} {'vars':>5s} {'cons':>5s} {'time s':>7s} "
          f"{'wall s':>7s} {'status':9s} layer")
    rows, infeasible = [], 0
    for seed in range(start, start + count):
        files, problem = random_case(seed, varied=False)
        arch = load_architecture(files.arch, files.mapspace, name=f"random{seed}")
        began = time.perf_counter()
        try:
            mapping = schedule(problem, arch, objective=objective, solver=solver,
                               threads=threads, time_limit=time_limit)
        except InfeasibleError:
            infeasible += 1
            continue
        wall = time.perf_counter() - began
        info = mapping.info
        rows.append({"layer": problem.name, "time": info["solve_time_s"], "wall": wall,
                     "solver": info["solver"]})
        print(f"{seed:5d} {arch.num_levels:6d} {arch.num_macs:5d} {info['num_vars']:5d} "
              f"{info['num_constraints']:5d} {info['solve_time_s']:7.2f} {wall:7.2f} "
              f"{info['status']:9s} {problem}", flush=True)
    print(f"{infeasible} of {count} pairs infeasible (the smallest tiles do not fit)")
    if rows:
        summarize(rows)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["simba", "gemmini"])
    parser.add_argument("--solver", default="highs", choices=["highs", "gurobi", "auto"])
    parser.add_argument("--objective", default="default", choices=OBJECTIVES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=None,
                        help="solver seconds per layer (default: the scheduler's, 2.5 s)")
    parser.add_argument("--layers", default="*", help="glob of layer files (default: all 24)")
    parser.add_argument("--random", type=int, default=0,
                        help="also N random (layer, architecture) pairs")
    args = parser.parse_args(argv)
    layers = sorted(WORKLOADS.glob(f"{args.layers}.yaml"))
    if not layers:
        parser.error(f"no layer matches {args.layers!r} in {WORKLOADS}")
    for arch_name in args.arch:
        run(arch_name, args.solver, Objective.preset(args.objective), args.threads,
            args.time_limit, layers)
    if args.random:
        run_random(args.random, args.solver, Objective.preset(args.objective), args.threads,
                   args.time_limit)


if __name__ == "__main__":
    main()
