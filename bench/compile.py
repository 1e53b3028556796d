#!/usr/bin/env python3
"""ResNet-50 through CoSAPass: cold and warm compile time, and the per-layer report.

Compile = ONNX import into Relax + CoSAPass (extract, solve the unique layers in `--jobs`
processes, check, lower every conv / matmul to TIR, build-check each scheduled function).
Cold: an empty schedule cache. Warm: the same model again with the cache the cold run filled;
it must solve nothing. The llvm build of the whole model (`--build`) is timed separately: it is
TVM's own code generation, the same with or without CoSA.

Targets (2 cores): cold compile < 60 s, warm compile < 5 s.

    python bench/compile.py                       # gemmini, solver auto, 2 jobs
    python bench/compile.py --arch simba --solver highs --build --verify
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tvm  # noqa: E402

from tvm_cosa.models import input_feed, resnet50  # noqa: E402
from tvm_cosa.relax import CoSAPass  # noqa: E402
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error, uses_gemmini,  # noqa
                                     run_onnxruntime, run_tvm)

COLD_TARGET_S, WARM_TARGET_S = 60.0, 5.0


def compile_once(model, arch, cache_dir, solver, jobs):
    """(seconds for import + CoSAPass, module, report)."""
    start = time.perf_counter()
    mod = import_onnx(model)
    cosa = CoSAPass(arch, solver=solver, cache=cache_dir, jobs=jobs, progress=False)
    mod = tvm.transform.Sequential([cosa])(mod)
    return time.perf_counter() - start, mod, cosa


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="gemmini")
    parser.add_argument("--solver", default="auto", choices=("auto", "highs", "gurobi"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--build", action="store_true", help="also time the llvm build")
    parser.add_argument("--verify", action="store_true",
                        help="build, run and compare with onnxruntime (implies --build)")
    parser.add_argument("--report", help="save the cold run's report as JSON here")
    args = parser.parse_args()

    model = resnet50(batch=args.batch)
    with tempfile.TemporaryDirectory(prefix="tvm_cosa_bench_") as cache_dir:
        cold_s, mod, cold = compile_once(model, args.arch, cache_dir, args.solver, args.jobs)
        warm_s, _, warm = compile_once(model, args.arch, cache_dir, args.solver, args.jobs)

    print(cold.report.table())
    if args.report:
        cold.report.to_json(args.report)
    rows = [("phase", "cold", "warm")]
    for phase in ("extract_s", "solve_s", "lower_s", "total_s"):
        rows.append((f"CoSAPass {phase[:-2]}", f"{cold.report.timings[phase]:.2f} s",
                     f"{warm.report.timings[phase]:.2f} s"))
    rows.append(("compile (import + pass)", f"{cold_s:.2f} s", f"{warm_s:.2f} s"))
    rows.append(("unique layers solved", str(cold.report.solved), str(warm.report.solved)))
    rows.append(("cache hits", str(cold.report.cache["hits"]), str(warm.report.cache["hits"])))

    failures = []
    if cold_s >= COLD_TARGET_S:
        failures.append(f"cold compile {cold_s:.1f} s >= {COLD_TARGET_S:g} s")
    if warm_s >= WARM_TARGET_S:
        failures.append(f"warm compile {warm_s:.1f} s >= {WARM_TARGET_S:g} s")
    if warm.report.solved:
        failures.append(f"the warm compile solved {warm.report.solved} layers")
    if any(r.status != "scheduled" for r in cold.report.records):
        failures.append("some layers fell back to TVM's default schedule")

    if args.build or args.verify:
        start = time.perf_counter()
        executable = build(mod, arch=cold.arch)
        label = "llvm build (TVM" + (", gcc link with the Gemmini functional model)"
                                     if uses_gemmini(mod) else ")")
        rows.append((label, f"{time.perf_counter() - start:.2f} s", ""))
        if args.verify:
            feed = input_feed(model)
            err = max_rel_error(run_tvm(executable, feed), run_onnxruntime(model, feed))
            rows.append(("max rel. error vs onnxruntime", f"{err:.2e}", ""))
            if err > 1e-4:
                failures.append(f"outputs differ from onnxruntime ({err:.2e})")

    print(f"\nResNet-50 (batch {args.batch}) on {cold.report.arch}, solver {args.solver}, "
          f"{args.jobs} jobs")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\ntargets: cold < {COLD_TARGET_S:g} s, warm < {WARM_TARGET_S:g} s: "
          + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
