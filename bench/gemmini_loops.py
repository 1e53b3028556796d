#!/usr/bin/env python3
"""Commands the CPU issues with and without Gemmini's CISC loop instructions (loop_ws,
loop_conv_ws).

Per model (int8, tvm_cosa.models), CoSA's schedules lowered:
- "int32": int32 results, requantized on the CPU (relax/fuse_requant.py off), loop_ws on;
- "plain": requantization on the array (int8 results), command by command;
- "loops": requantization on the array, one `gemmini_loop_ws` per CoSA tile where the tile
  allows it (target/gemmini/loops.py: int32 matmuls / 1x1 convolutions) and one
  `gemmini_loop_conv_ws` per tile of a requantized convolution where the tile allows it
  (target/gemmini/conv_loops.py: the whole reduction inside the tile, the working set in half
  the scratchpad and accumulator);
- "db": the same with schedules made for half the memories (GemminiConfig(double_buffer=True)),
  so that more tiles fit the loop instructions' double buffering;
each run on the functional model with seeded inputs, outputs compared with the first variant's.
Commands issued by the CPU = RoCC commands (config, mvin, mvout, preload, compute, flush) minus
those the loop unit issued itself, plus 6 per loop_ws and 7 per loop_conv_ws (their
configuration registers and the loop: gemmini.h's macros). Prints, per model, the operators a
loop instruction covers or declines ("plain" against "loops") and a total per variant.

    python bench/gemmini_loops.py                      # ResNet-18 and ResNet-50, 224x224
    python bench/gemmini_loops.py --models resnet50_int8 --variants plain db
    python bench/gemmini_loops.py --models resnet18_int8 --image-size 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np

COMMANDS = ("config_ex", "config_ld", "config_st", "mvin", "mvin_acc", "mvout", "preload",
            "compute_preloaded", "compute_accumulated", "flush")
# variant -> (schedules for half the memories, loop instructions, requantization on the array)
VARIANTS = {"int32": (False, True, False), "plain": (False, False, True),
            "loops": (False, True, True), "db": (True, True, True)}


def issued(counters: dict) -> int:
    return (sum(counters[c] for c in COMMANDS) - counters.get("loop_commands", 0)
            + 6 * counters.get("loop_ws", 0) + 7 * counters.get("loop_conv_ws", 0))


def run_variant(model, feed, double_buffer: bool, loop_ws: bool, requant: bool, cache):
    from tvm_cosa.relax.frontend import import_onnx
    from tvm_cosa.target.gemmini import GemminiConfig, flow, loops
    from tvm_cosa.target.gemmini.lowering import OP_REGISTRY

    with loops.loop_instructions(loop_ws):
        compiled = flow.compile_module(import_onnx(model),
                                       GemminiConfig(double_buffer=double_buffer), cache=cache,
                                       requant=requant)
    runner = flow.load(compiled.mod, compiled.config)
    start = time.time()
    outputs = runner(feed)
    seconds = time.time() - start
    per_op = {op: (runner.model.counters(op), dict(OP_REGISTRY.get(op, {})))
              for op in runner.model.op_ids()}
    return outputs, per_op, runner.model.counters(), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18_int8", "resnet50_int8"])
    parser.add_argument("--variants", nargs="+", default=["int32", "plain", "loops"],
                        choices=sorted(VARIANTS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cache", default=None, help="schedule cache directory")
    args = parser.parse_args()
    from tvm_cosa import models

    for name in args.models:
        model = getattr(models, name)(image_size=args.image_size)
        feed = models.input_feed(model)
        runs = {v: run_variant(model, feed, *VARIANTS[v], args.cache) for v in args.variants}
        first = runs[args.variants[0]]
        if "plain" in runs and "loops" in runs:
            ops0, ops1 = runs["plain"][1], runs["loops"][1]
            print(f"\n{name} ({args.image_size}x{args.image_size}): commands the CPU issues per "
                  "operator (all its calls), without / with loop instructions, the same "
                  "schedules, requantization on the array")
            header = ("operator", "calls", "cmds before", "cmds after", "bytes in before",
                      "bytes in after", "loop instruction (or why not)")
            print(" | ".join(header))
            print(" | ".join("---" for _ in header))
            rows = []
            for op, (c1, info) in ops1.items():
                c0 = ops0[op][0]
                rows.append((f"{info.get('kind', '')} {info.get('shape', '')}", c1["calls"],
                             issued(c0), issued(c1), c0["bytes_in"], c1["bytes_in"],
                             info.get("loop_ws", "")))
            for row in sorted(rows, key=lambda r: -r[2]):
                if row[6] in ("loop_ws", "loop_conv_ws") or "half" in row[6] or \
                        "strided" in row[6] or "reduction" in row[6] or "skips" in row[6]:
                    print(" | ".join(str(v) for v in row))
        print(f"\n{name} ({args.image_size}x{args.image_size}) totals:")
        for variant, (outputs, _, total, seconds) in runs.items():
            same = all(np.array_equal(a, b) for a, b in zip(first[0], outputs))
            print(f"  {variant:6s} {issued(total):>10,} commands issued, {total['loop_ws']} "
                  f"loop_ws, {total['loop_conv_ws']} loop_conv_ws, bytes in "
                  f"{total['bytes_in'] + total['bytes_in_acc']:,}, bytes out "
                  f"{total['bytes_out']:,}; "
                  f"outputs equal to {args.variants[0]}'s: {same}; run {seconds:.1f} s")


if __name__ == "__main__":
    main()
