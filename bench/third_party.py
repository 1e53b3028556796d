#!/usr/bin/env python3
"""Third-party graphs: the light model zoo of the `onnx` wheel through the Gemmini flow and the
generic path, against onnxruntime.

For each graph (Caffe2 exports, opset 9, seeded random weights: tvm_cosa.models.zoo) and each
path, one row:
- layers: conv2d / matmul operators found, scheduled by CoSA, lowered onto the Gemmini array;
- compile cold / warm: import + (GemminiPrepare) + CoSAPass with an empty schedule cache, then
  again with the cache the cold run filled;
- build + run: tvm.compile(target="llvm"), relax.VirtualMachine (the Gemmini operators on the
  functional model), one inference;
- error: the largest relative error against onnxruntime over the outputs (softmax and logits).

Paths: gemmini = GemminiPrepare + CoSAPass("gemmini") (the float32 configuration);
generic = CoSAPass("simba") with the generic TIR lowering. Both built with tvm.compile for llvm.

    python bench/third_party.py                          # all nine, 224 x 224, both paths
    python bench/third_party.py --models squeezenet --image-size 64 --paths gemmini
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

from tvm_cosa.models.zoo import LIGHT_ZOO, light_model  # noqa: E402
from tvm_cosa.relax import CoSAPass  # noqa: E402
from tvm_cosa.relax.frontend import (import_onnx, max_rel_error, run_onnxruntime,  # noqa: E402
                                     run_tvm, seeded_feed)
from tvm_cosa.target.gemmini import flow  # noqa: E402

PATHS = ("gemmini", "generic")
GENERIC_ARCH = "simba"


def compile_once(model, path, cache_dir, jobs):
    """(seconds, module, report) for import + the path's passes."""
    start = time.perf_counter()
    mod = import_onnx(model)
    options = dict(cache=cache_dir, jobs=jobs, progress=False)
    if path == "gemmini":
        compiled = flow.compile_module(mod, "gemmini", **options)
        mod, report = compiled.mod, compiled.report
    else:
        cosa = CoSAPass(GENERIC_ARCH, **options)
        mod = tvm.transform.Sequential([cosa])(mod)
        report = cosa.report
    return time.perf_counter() - start, mod, report


def measure(name, path, model, feed, want, jobs):
    with tempfile.TemporaryDirectory(prefix="tvm_cosa_bench_") as cache_dir:
        cold_s, _, _ = compile_once(model, path, cache_dir, jobs)
        gc.collect()
        warm_s, mod, report = compile_once(model, path, cache_dir, jobs)
    start = time.perf_counter()
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    got = run_tvm(vm, feed)
    run_s = time.perf_counter() - start
    records = report.records
    return {
        "graph": name, "path": path, "found": len(records),
        "scheduled": sum(r.status == "scheduled" for r in records),
        "on_array": (sum(r.lowering == "gemmini" for r in records) if path == "gemmini"
                     else None),
        "cold_s": cold_s, "warm_s": warm_s, "solved_warm": report.solved,
        "build_s": build_s, "run_s": run_s, "error": max_rel_error(got, want),
    }


COLUMNS = ("graph", "path", "layers found / scheduled / on array", "compile cold", "warm",
           "build", "run", "max rel. error")


def row(r) -> list:
    on_array = "-" if r["on_array"] is None else str(r["on_array"])
    return [r["graph"], r["path"], f"{r['found']} / {r['scheduled']} / {on_array}",
            f"{r['cold_s']:.1f} s", f"{r['warm_s']:.1f} s", f"{r['build_s']:.1f} s",
            f"{r['run_s']:.1f} s", f"{r['error']:.1e}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(LIGHT_ZOO), choices=LIGHT_ZOO)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--image-size", type=int, default=None,
                        help="run the graphs on smaller images (default: as exported, 224)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS), flush=True)
    worst = 0.0
    for name in args.models:
        model = light_model(name, image_size=args.image_size)
        feed = seeded_feed(model)
        want = run_onnxruntime(model, feed)
        for path in args.paths:
            try:
                result = measure(name, path, model, feed, want, args.jobs)
            except Exception as err:  # noqa: BLE001 - one graph's failure is a row, not the end
                print(f"| {name} | {path} | FAILED: {type(err).__name__}: "
                      f"{str(err).strip().splitlines()[-1][:150]} |", flush=True)
                worst = float("inf")
                continue
            worst = max(worst, result["error"])
            print("| " + " | ".join(row(result)) + " |", flush=True)
            gc.collect()
    print(f"\nlargest relative error: {worst:.1e} (tolerance 1e-4)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
