#!/usr/bin/env python3
"""CoSA against Timeloop's own mapper, both judged by timeloop-model.

Cases: the ResNet-50 layers of CoSA's workload set on simba and gemmini, the same layers on an
Eyeriss-like architecture (Timeloop tree file tests/data/arch/eyeriss_like.tree.yaml with a
row-stationary-style bypass: each scratchpad keeps one tensor, the global buffer inputs and
outputs), and random (layer, architecture) pairs from `tvm_cosa.timeloop.fuzz`. `--cases N`
takes the first N of them round-robin over the four groups.

Per case and objective:
- CoSA: `schedule(objective=Objective.preset("latency" | "energy"))` with HiGHS, its map run
  through timeloop-model;
- timeloop-mapper: random-pruned, `--threads` threads (default 2), optimization metrics
  [delay, energy] for the latency objective and [energy, delay] for the energy objective, a
  mapspace with the architecture's bypass and spatial rules (the same as CoSA's; Gemmini's
  array takes reductions on X and output channels on Y only), stopped with SIGINT
  after `--time-limit` seconds (default 60); its best map is run through timeloop-model.
Latency compares cycles, energy compares energy; CoSA wins a case when its value is at most
1.01 x the mapper's. Prints one table row per case and objective and the win counts.

Needs timeloop-model and timeloop-mapper on PATH.

    python bench/vs_mapper.py                              # everything, 60 s per mapper run
    python bench/vs_mapper.py --cases 12 --time-limit 15   # a reduced run
    python bench/vs_mapper.py --results bench/results/vs_mapper.csv   # resumable: rerun to go on

With --results, every finished case is appended to the CSV (with the load average when it
finished, since a busy machine gives the mapper less search) and a rerun skips the cases already
there, so the full set (about 4 hours of mapper time) can be measured in several sittings.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa import Problem, load_architecture, preset  # noqa: E402
from tvm_cosa.errors import CoSAError, InfeasibleError  # noqa: E402
from tvm_cosa.scheduler import Objective, build_model, schedule  # noqa: E402
from tvm_cosa.timeloop import (find_timeloop, parse_stats, run_timeloop,  # noqa: E402
                               write_architecture, write_problem)
from tvm_cosa.timeloop.fuzz import random_case  # noqa: E402

WORKLOADS = ROOT / "tests" / "data" / "workloads" / "resnet50"
EYERISS = ROOT / "tests" / "data" / "arch" / "eyeriss_like.tree.yaml"
EYERISS_BYPASS = {"psum_spad": ["Outputs"], "weights_spad": ["Weights"],
                  "ifmap_spad": ["Inputs"], "DummyBuffer": [],
                  "shared_glb": ["Inputs", "Outputs"]}
TENSORS = ("Weights", "Inputs", "Outputs")
TOLERANCE = 1.01


def eyeriss():
    constraints = [{"target": level, "type": "bypass", "keep": keep,
                    "bypass": [t for t in TENSORS if t not in keep]}
                   for level, keep in EYERISS_BYPASS.items()]
    return load_architecture(EYERISS, {"mapspace": {"constraints": constraints}},
                             name="eyeriss_like")


def resnet_layers():
    return [Problem.from_yaml(p) for p in sorted(WORKLOADS.glob("*.yaml"))]


def random_pairs(count, start=5000):
    """`count` random (layer, architecture) pairs with a schedule at all (a pair whose smallest
    tiles do not fit is skipped: no mapper finds one either)."""
    out, seed = [], start
    while len(out) < count:
        files, problem = random_case(seed, varied=False)
        arch = load_architecture(files.arch, files.mapspace, name=f"random{seed}")
        try:
            build_model(problem, arch)
        except InfeasibleError:
            seed += 1
            continue
        out.append((f"random{seed}", arch, problem.renamed(f"seed{seed}")))
        seed += 1
    return out


GROUPS = {
    "simba": lambda count: [("simba", preset("simba"), p) for p in resnet_layers()],
    "gemmini": lambda count: [("gemmini", preset("gemmini"), p) for p in resnet_layers()],
    "eyeriss": lambda count: [("eyeriss", eyeriss(), p) for p in resnet_layers()],
    "random": random_pairs,
}


def cases(random_count, groups=tuple(GROUPS)):
    lists = [GROUPS[g](random_count) for g in groups]
    out = []
    for k in range(max(map(len, lists))):  # round-robin, so --cases N covers every group
        out += [g[k] for g in lists if k < len(g)]
    return out


def spatial_constraints(arch, problem):
    """Timeloop spatial constraints for the fan-outs whose dimensions the architecture restricts
    (Gemmini: reductions on the array's X, output channels on Y): the other dimensions get
    factor 1, and the permutation's split puts each allowed one on its axis. A dimension allowed
    on both axes leaves the split free (the mapper then searches more than CoSA, never less)."""
    out = []
    dims = list(problem.dims)
    for i, lv in enumerate(arch.levels):
        if arch.fanout(i) == (1, 1) or (lv.spatial_dims_x is None and lv.spatial_dims_y is None):
            continue
        on_x = set(dims) if lv.spatial_dims_x is None else set(problem.resolve_dims(
            lv.spatial_dims_x))
        on_y = set(dims) if lv.spatial_dims_y is None else set(problem.resolve_dims(
            lv.spatial_dims_y))
        fx, fy = arch.fanout(i)
        on_x, on_y = (on_x if fx > 1 else set()), (on_y if fy > 1 else set())
        barred = [d for d in dims if d not in on_x | on_y]
        entry = {"target": lv.name, "type": "spatial",
                 "factors": " ".join(f"{d}1" for d in barred)}
        if not on_x & on_y:
            x_dims = [d for d in dims if d in on_x] + barred
            entry["permutation"] = "".join(x_dims + [d for d in dims if d in on_y])
            entry["split"] = len(x_dims)
        out.append(entry)
    return out


def mapper_config(arch, problem, objective, threads):
    """The mapper's search: the architecture's bypass and spatial rules, as CoSA has them."""
    metrics = ["delay", "energy"] if objective == "latency" else ["energy", "delay"]
    constraints = [{"target": lv.name, "type": "bypass",
                    "keep": [t for t in TENSORS if t in lv.keeps],
                    "bypass": [t for t in TENSORS if t not in lv.keeps]} for lv in arch.levels]
    constraints += spatial_constraints(arch, problem)
    return {"mapper": {"optimization-metrics": metrics, "algorithm": "random-pruned",
                       "num-threads": threads, "search-size": 0, "timeout": 0,
                       "victory-condition": 0, "live-status": False, "log-stats": False,
                       "diagnostics": False},
            "mapspace": {"constraints": constraints}}


def run_mapper(arch, problem, objective, seconds, threads, folder: Path):
    """timeloop-mapper for `seconds`, then timeloop-model on its best map: (cycles, energy)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_architecture(arch, folder / "arch.yaml")
    write_problem(problem, folder / "prob.yaml")
    (folder / "mapper.yaml").write_text(yaml.safe_dump(mapper_config(arch, problem, objective,
                                                                     threads),
                                                       sort_keys=False))
    mapper = shutil.which("timeloop-mapper")
    with open(folder / "mapper.log", "w") as log:
        proc = subprocess.Popen([mapper, "arch.yaml", "prob.yaml", "mapper.yaml"], cwd=folder,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # the mapper stops and writes its best map
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    best = folder / "timeloop-mapper.map.yaml"
    if not best.is_file():
        return None
    model = find_timeloop()
    judge = folder / "judge"
    judge.mkdir(exist_ok=True)
    for name in ("arch.yaml", "prob.yaml"):
        shutil.copy(folder / name, judge / name)
    shutil.copy(best, judge / "map.yaml")
    subprocess.run([str(model), "arch.yaml", "prob.yaml", "map.yaml"], cwd=judge,
                   capture_output=True, text=True, timeout=600)
    stats = judge / "timeloop-model.stats.txt"
    if not stats.is_file():
        return None
    ev = parse_stats(stats.read_text())
    return ev.cycles, ev.energy_pJ


def run_cosa(arch, problem, objective, folder: Path):
    began = time.perf_counter()
    mapping = schedule(problem, arch, objective=Objective.preset(objective), solver="highs")
    solve = time.perf_counter() - began
    ev = run_timeloop(mapping, problem, arch, workdir=folder)
    if not ev.valid:
        raise CoSAError(f"timeloop-model rejected CoSA's map: {ev.error}")
    return ev.cycles, ev.energy_pJ, solve, mapping


FIELDS = ("arch", "layer", "objective", "time_limit", "threads", "cosa_cycles", "cosa_energy_pJ",
          "mapper_cycles", "mapper_energy_pJ", "ratio", "cosa_solve_s", "load_avg", "date")


def read_results(path: Path) -> dict:
    """Rows of an earlier run, keyed by (arch, layer, objective, time_limit, threads)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {result_key(r["arch"], r["layer"], r["objective"], float(r["time_limit"]),
                           int(r["threads"])): r for r in csv.DictReader(f)}


def result_key(arch, layer, objective, time_limit, threads):
    return (arch, layer, objective, f"{float(time_limit):g}", int(threads))


def append_result(path: Path, row: dict):
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def recheck(row: dict, cosa, field: int) -> dict:
    """The row with CoSA's side measured again (the mapper's values stay)."""
    theirs = row["mapper_cycles"] if field == 0 else row["mapper_energy_pJ"]
    return {**row, "cosa_cycles": cosa[0], "cosa_energy_pJ": cosa[1],
            "ratio": cosa[field] / float(theirs) if theirs else "",
            "cosa_solve_s": f"{cosa[2]:.3f}"}


def table_row(row: dict) -> str:
    field = "cycles" if row["objective"] == "latency" else "energy_pJ"
    cosa, theirs = row[f"cosa_{field}"], row[f"mapper_{field}"]
    ratio = f"{float(row['ratio']):.3f}" if row["ratio"] else "-"
    theirs = f"{float(theirs):.4g}" if theirs else "no valid map"
    return (f"| {row['arch']} | {row['layer']} | {row['objective']} | {float(cosa):.4g} | "
            f"{theirs} | {ratio} | {float(row['cosa_solve_s']):.2f} | {row['date']} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", type=float, default=60.0,
                    help="seconds per timeloop-mapper run")
    ap.add_argument("--cases", type=int, default=None, help="run only the first N cases")
    ap.add_argument("--random", type=int, default=50, help="random (layer, arch) pairs")
    ap.add_argument("--groups", default="simba,gemmini,eyeriss,random",
                    help="case groups, in this order of priority (comma-separated)")
    ap.add_argument("--objective", choices=("latency", "energy", "both"), default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=None,
                    help="CSV of results: cases already in it are not run again (resume), new "
                         "ones are appended")
    ap.add_argument("--recheck-cosa", action="store_true",
                    help="with --results: schedule the cases already measured again with the "
                         "current CoSA (the mapper's results are kept) and rewrite the file")
    ap.add_argument("--keep", type=Path, default=None, help="keep every run's files here")
    args = ap.parse_args(argv)
    if find_timeloop() is None or shutil.which("timeloop-mapper") is None:
        print("timeloop-model and timeloop-mapper must be on PATH", file=sys.stderr)
        return 2
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        print(f"--groups: unknown group(s) {unknown}; choose from {list(GROUPS)}",
              file=sys.stderr)
        return 2
    objectives = ("latency", "energy") if args.objective == "both" else (args.objective,)
    todo = cases(args.random, groups)[:args.cases]
    done = read_results(args.results) if args.results else {}
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="vs_mapper_"))
    rows = []
    print(f"{len(todo)} cases x {len(objectives)} objective(s), mapper {args.time_limit:g} s "
          f"x {args.threads} threads" + (f"; results in {args.results}" if args.results else ""))
    print("\n| arch | layer | objective | CoSA | mapper | CoSA / mapper | CoSA solve s "
          "| measured |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for n, (arch_name, arch, problem) in enumerate(todo):
            for objective in objectives:
                key = result_key(arch_name, problem.name, objective, args.time_limit,
                                 args.threads)
                if key in done and not args.recheck_cosa:  # measured by an earlier run
                    rows.append(done[key])
                    print(table_row(done[key]), flush=True)
                    continue
                if args.recheck_cosa and key not in done:
                    continue
                where = scratch / f"{n:03d}_{arch_name}_{problem.name}_{objective}"
                field = 0 if objective == "latency" else 1
                try:
                    cosa = run_cosa(arch, problem, objective, where / "cosa")
                except CoSAError as err:
                    print(f"| {arch_name} | {problem.name} | {objective} | error: "
                          f"{str(err)[:60]} | | | | |", flush=True)
                    continue
                if args.recheck_cosa:
                    row = recheck(done[key], cosa, field)
                    rows.append(row)
                    print(table_row(row), flush=True)
                    continue
                theirs = run_mapper(arch, problem, objective, args.time_limit, args.threads,
                                    where / "mapper")
                row = {"arch": arch_name, "layer": problem.name, "objective": objective,
                       "time_limit": f"{args.time_limit:g}", "threads": args.threads,
                       "cosa_cycles": cosa[0], "cosa_energy_pJ": cosa[1],
                       "mapper_cycles": theirs[0] if theirs else "",
                       "mapper_energy_pJ": theirs[1] if theirs else "",
                       "ratio": cosa[field] / theirs[field] if theirs else "",
                       "cosa_solve_s": f"{cosa[2]:.3f}",
                       "load_avg": f"{os.getloadavg()[0]:.2f}",
                       "date": time.strftime("%Y-%m-%d %H:%M")}
                rows.append(row)
                if args.results:
                    append_result(args.results, row)
                print(table_row(row), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.recheck_cosa and args.results:
        rechecked = {result_key(r["arch"], r["layer"], r["objective"], r["time_limit"],
                                r["threads"]): r for r in rows}
        args.results.unlink()
        for key, row in done.items():
            append_result(args.results, rechecked.get(key, row))
    print()
    for o in objectives:
        mine = [r for r in rows if r["objective"] == o]
        ratios = [float(r["ratio"]) for r in mine if r["ratio"]]
        won = sum(1 for r in mine if not r["ratio"] or float(r["ratio"]) <= TOLERANCE)
        geo = (math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios
               else float("nan"))
        worst = max(ratios) if ratios else float("nan")
        print(f"{o}: CoSA at most {TOLERANCE:g} x the mapper on {won} of {len(mine)} cases; "
              f"CoSA / mapper geomean {geo:.3f}, worst {worst:.3f}")
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
