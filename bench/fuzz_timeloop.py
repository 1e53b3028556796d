#!/usr/bin/env python3
"""Fuzz the scheduler and the built-in cost model against real timeloop-model.

Each case (a seed) is a random architecture in Timeloop's own formats (v0.3 `arch:` + mapspace,
or the hierarchical `architecture:` tree) and a random layer (`tvm_cosa.timeloop.fuzz`). CoSA
schedules it (HiGHS); the schedule and `--random-mappings` random valid maps are written as
Timeloop map files, run through timeloop-model and the built-in model, and compared field by
field: utilized capacity, reads, fills, updates per level and tensor, cycles, and energy
(1e-6 relative, or Timeloop's 2-decimal print rounding when larger).

Prints the count of every outcome (ok, infeasible, unwritable, rejected, crash, count_diff,
energy_diff, ...) for CoSA's schedules and for the random maps, and the first differing cases;
their files (arch.yaml, mapspace.yaml, prob.yaml, map.yaml, timeloop-model.stats.txt) are kept
in `--keep DIR/<seed>/<kind>/`. Needs timeloop-model on PATH (or --timeloop).

Target (issue 10): over >= 2000 cases 0 unwritable, 0 rejected, 0 crashes, 0 count or cycle
differences, energy within 1e-6.

    python bench/fuzz_timeloop.py --cases 2000 --jobs 2
    python bench/fuzz_timeloop.py --cases 50 --start 1000 --random-mappings 3 --keep /tmp/fuzz
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa.timeloop import find_timeloop  # noqa: E402
from tvm_cosa.timeloop.fuzz import OUTCOMES, run_case  # noqa: E402

FAILURES = ("unwritable", "rejected", "crash", "count_diff", "energy_diff", "error")


def _one(seed, scratch, options):
    folder = Path(scratch) / str(seed)
    try:
        records = run_case(seed, folder, **options)
    except Exception as err:  # noqa: BLE001 - the harness reports every failure
        records = [{"seed": seed, "kind": "case", "outcome": "error",
                    "diffs": [f"{type(err).__name__}: {err}"], "dir": str(folder)}]
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--random-mappings", type=int, default=1,
                    help="random valid maps per case, besides CoSA's schedule")
    ap.add_argument("--no-schedule", action="store_true", help="random maps only")
    ap.add_argument("--time-limit", type=float, default=20.0, help="solver time limit (s)")
    ap.add_argument("--format", choices=("v0.3", "tree"), default=None,
                    help="architecture format (default: random per case)")
    ap.add_argument("--keep", type=Path, default=Path("fuzz-timeloop-failures"),
                    help="folder for the files of the first differing cases")
    ap.add_argument("--show", type=int, default=10, help="differing cases to print and keep")
    ap.add_argument("--timeloop", default=None, help="timeloop-model binary or folder")
    ap.add_argument("--json", type=Path, default=None, help="write every record here")
    args = ap.parse_args(argv)
    binary = find_timeloop(args.timeloop)
    if binary is None:
        print("timeloop-model not found: put it on PATH or pass --timeloop", file=sys.stderr)
        return 2
    options = {"timeloop": str(binary), "random_mappings": args.random_mappings,
               "time_limit": args.time_limit, "fmt": args.format,
               "schedule_it": not args.no_schedule}
    scratch = tempfile.mkdtemp(prefix="fuzz_timeloop_")
    counts = {"cosa": collections.Counter(), "random": collections.Counter()}
    shown, records_all = [], []
    began = time.perf_counter()
    seeds = range(args.start, args.start + args.cases)
    try:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(_one, s, scratch, options): s for s in seeds}
            for n, fut in enumerate(as_completed(futures), 1):
                records = fut.result()
                keep_seed = False
                for r in records:
                    group = "cosa" if r["kind"] == "cosa" else "random"
                    counts[group][r["outcome"]] += 1
                    records_all.append(r)
                    if r["outcome"] in FAILURES and len(shown) < args.show:
                        shown.append(r)
                        keep_seed = True
                seed_dir = Path(scratch) / str(futures[fut])
                if keep_seed:
                    target = args.keep / seed_dir.name
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(seed_dir, target)
                shutil.rmtree(seed_dir, ignore_errors=True)
                if n % 50 == 0:  # running counts, so that a long run can be read midway
                    so_far = ", ".join(f"{g} {dict(c)}" for g, c in counts.items())
                    print(f"  {n}/{args.cases} cases, {time.perf_counter() - began:.0f} s: "
                          f"{so_far}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - began
    print(f"{args.cases} cases (seeds {args.start}..{args.start + args.cases - 1}), "
          f"{args.random_mappings} random map(s) each, {args.jobs} workers, {wall:.0f} s\n")
    print("| outcome | CoSA schedules | random maps |\n| --- | --- | --- |")
    for outcome in OUTCOMES:
        c, r = counts["cosa"][outcome], counts["random"][outcome]
        if c or r or outcome in FAILURES:
            print(f"| {outcome} | {c} | {r} |")
    print(f"| total | {sum(counts['cosa'].values())} | {sum(counts['random'].values())} |")
    if shown:
        print(f"\nFirst differing cases (files in {args.keep}/<seed>/<kind>/):")
        for r in shown:
            print(f"- seed {r['seed']} {r['kind']} [{r['outcome']}] {r.get('problem', '')} "
                  f"({r.get('arch_format', '')})")
            for line in r["diffs"][:6]:
                print(f"    {line}")
    if args.json:
        args.json.write_text(json.dumps(records_all, indent=1))
    bad = sum(counts[g][o] for g in counts for o in FAILURES)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
