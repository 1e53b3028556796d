#!/usr/bin/env python3
"""Commands the CPU issues with and without Gemmini's CISC loop instruction (loop_ws).

Per model (int8, tvm_cosa.models), the same CoSA schedules lowered twice -- command by command,
and with one `gemmini_loop_ws` per CoSA tile where the tile allows it (target/gemmini/loops.py:
matmuls and 1x1 convolutions whose tile is an evenly strided run of rows and fits half the
scratchpad and accumulator) -- and run on the functional model with seeded inputs; outputs must
be equal. Commands issued by the CPU = RoCC commands (config, mvin, mvout, preload, compute,
flush) minus those the loop unit issued itself, plus 6 per loop_ws (five configuration
registers and the loop: gemmini.h's macro). Prints one row per Gemmini operator that loop_ws
covers or declines, and a total per model.

    python bench/gemmini_loops.py                      # ResNet-18 and ResNet-50, 224x224
    python bench/gemmini_loops.py --models resnet18_int8 --image-size 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np

COMMANDS = ("config_ex", "config_ld", "config_st", "mvin", "mvin_acc", "mvout", "preload",
            "compute_preloaded", "compute_accumulated", "flush")


def issued(counters: dict) -> int:
    return (sum(counters[c] for c in COMMANDS) - counters.get("loop_commands", 0)
            + 6 * counters.get("loop_ws", 0))


def run_model(name: str, image_size: int, cache: str):
    from tvm_cosa import models
    from tvm_cosa.relax.frontend import import_onnx
    from tvm_cosa.target.gemmini import flow, loops
    from tvm_cosa.target.gemmini.lowering import OP_REGISTRY

    model = getattr(models, name)(image_size=image_size)
    feed = models.input_feed(model)
    runs = {}
    for enabled in (False, True):
        with loops.loop_instructions(enabled):
            compiled = flow.compile_module(import_onnx(model), "gemmini", cache=cache)
        runner = flow.load(compiled.mod, compiled.config)
        start = time.time()
        outputs = runner(feed)
        seconds = time.time() - start
        per_op = {op: (runner.model.counters(op), dict(OP_REGISTRY.get(op, {})))
                  for op in runner.model.op_ids()}
        runs[enabled] = (outputs, per_op, runner.model.counters(), seconds)
    (out0, ops0, total0, s0), (out1, ops1, total1, s1) = runs[False], runs[True]
    same = all(np.array_equal(a, b) for a, b in zip(out0, out1))
    rows = []
    for op, (c1, info) in ops1.items():
        c0 = ops0[op][0]
        note = info.get("loop_ws", "")
        rows.append((f"{info.get('kind', '')} {info.get('shape', '')}", c1["calls"], issued(c0),
                     issued(c1), c0["bytes_in"], c1["bytes_in"], note))
    return rows, (issued(total0), issued(total1), total0["bytes_in"], total1["bytes_in"],
                  total1["loop_ws"], same, s0, s1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18_int8", "resnet50_int8"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cache", default=None, help="schedule cache directory")
    args = parser.parse_args()
    for name in args.models:
        rows, total = run_model(name, args.image_size, args.cache)
        print(f"\n{name} ({args.image_size}x{args.image_size}): commands the CPU issues per "
              "operator (all its calls), without / with loop_ws")
        header = ("operator", "calls", "cmds before", "cmds after", "bytes in before",
                  "bytes in after", "loop_ws")
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for row in sorted(rows, key=lambda r: -r[2]):
            if row[6] == "loop_ws" or "half" in row[6] or "strided" in row[6]:
                print(" | ".join(str(v) for v in row))
        before, after, b0, b1, n_loops, same, s0, s1 = total
        print(f"total: {before} -> {after} commands issued ({before / max(after, 1):.2f}x fewer), "
              f"{n_loops} loop_ws; bytes in {b0} -> {b1}; outputs equal: {same}; functional "
              f"model run {s0:.1f} s -> {s1:.1f} s")


if __name__ == "__main__":
    main()
