#!/usr/bin/env python3
"""Even against uneven schedules (CoSA's Z chosen by the MILP) on ResNet-50 and MobileNetV2.

For every unique conv / matmul layer of `tvm_cosa.models.resnet50()` and `mobilenet_v2()`
(weighted by how often it occurs), on simba, gemmini and a small Gemmini (16 KiB scratchpad,
4 KiB accumulator, where capacity binds): the even schedule (`schedule()`) and the uneven one
(`schedule(..., uneven=True)`), both evaluated by the built-in cost model (cycles, energy).
Prints per-layer rows where they differ, per model and architecture totals, and each layer where
uneven wins with a one-line reason (the moved boundaries and the largest saving).

    python bench/uneven.py                       # everything (16 min on the loaded 2-core machine)
    python bench/uneven.py --arch gemmini-small --model resnet50 --time-limit 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa import Mapping, preset, schedule  # noqa: E402
from tvm_cosa.cost_model import evaluate  # noqa: E402


def architectures():
    from tvm_cosa.target.gemmini import GemminiConfig

    return {"simba": preset("simba"), "gemmini": preset("gemmini"),
            "gemmini-small": GemminiConfig(scratchpad_kib=16, accumulator_kib=4).architecture()}


def model_layers(name):
    """[(problem, occurrences)] of the model's scheduled operators, unique shapes in order."""
    from tvm_cosa import models
    from tvm_cosa.relax.extract import extract
    from tvm_cosa.relax.frontend import import_onnx

    counts, problems = {}, {}
    for op in extract(import_onnx(getattr(models, name)())):
        if op.supported:
            key = op.problem.key()
            problems.setdefault(key, op.problem.renamed(f"{name}#{len(problems)}"))
            counts[key] = counts.get(key, 0) + 1
    return [(problems[k], counts[k]) for k in problems]


def reason(even_ev, uneven_ev, mapping, arch) -> str:
    """The moved boundaries, and the (level, tensor) whose energy dropped the most."""
    moves = ", ".join(f"{t}@{arch.levels[i].name} spans loops to {arch.levels[j].name}"
                      for (t, i), j in sorted(mapping.tile_levels.items()))
    best, saved = None, 0.0
    for a, b in zip(even_ev.levels, uneven_ev.levels):
        for t, stats in a.tensors.items():
            other = b.tensors.get(t)
            if other is not None and stats.energy_total_pJ - other.energy_total_pJ > saved:
                saved = stats.energy_total_pJ - other.energy_total_pJ
                best = (a.name, t, stats, other)
    if best is None:
        return moves
    level, t, s0, s1 = best
    return (f"{moves}; {t} at {level}: {s0.accesses * s0.utilized_instances:,} -> "
            f"{s1.accesses * s1.utilized_instances:,} accesses")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=sorted(architectures()))
    parser.add_argument("--model", action="append", choices=["resnet50", "mobilenet_v2"])
    parser.add_argument("--time-limit", type=float, default=5.0,
                        help="seconds for the joint uneven model (and the even one)")
    parser.add_argument("--solver", default="highs")
    args = parser.parse_args(argv)
    archs = {k: v for k, v in architectures().items() if not args.arch or k in args.arch}
    names = args.model or ["resnet50", "mobilenet_v2"]
    layers = {name: model_layers(name) for name in names}
    wins = []
    totals = []
    for arch_name, arch in archs.items():
        for name in names:
            began = time.perf_counter()
            tot = {"even_cycles": 0, "uneven_cycles": 0, "even_pJ": 0.0, "uneven_pJ": 0.0}
            print(f"\n{arch_name} / {name}: {len(layers[name])} unique layers")
            print(f"  {'layer':18} {'n':>2} {'even cycles':>12} {'uneven':>12} "
                  f"{'even uJ':>10} {'uneven':>10}  chosen")
            for problem, n in layers[name]:
                mapping = schedule(problem, arch, solver=args.solver, uneven=True,
                                   time_limit=args.time_limit)
                even = Mapping.from_dict(mapping.info["uneven"]["even_mapping"])
                ev_e, ev_u = evaluate(even, problem, arch), evaluate(mapping, problem, arch)
                tot["even_cycles"] += n * ev_e.cycles
                tot["uneven_cycles"] += n * ev_u.cycles
                tot["even_pJ"] += n * ev_e.energy_pJ
                tot["uneven_pJ"] += n * ev_u.energy_pJ
                chosen = mapping.info["uneven"]["chosen"]
                if chosen != "even":
                    print(f"  {problem.name:18} {n:>2} {ev_e.cycles:>12,} {ev_u.cycles:>12,} "
                          f"{ev_e.energy_pJ / 1e6:>10.2f} {ev_u.energy_pJ / 1e6:>10.2f}  {chosen}")
                if ev_u.cycles < ev_e.cycles or ev_u.energy_pJ < ev_e.energy_pJ * (1 - 1e-6):
                    wins.append((arch_name, problem, ev_e, ev_u,
                                 reason(ev_e, ev_u, mapping, arch)))
            totals.append((arch_name, name, tot, time.perf_counter() - began))
    print("\ntotals (built-in model, each layer times its occurrences)")
    print(f"{'arch':14} {'model':13} {'even Mcycles':>12} {'uneven':>10} {'ratio':>7} "
          f"{'even mJ':>9} {'uneven':>9} {'ratio':>7} {'time s':>7}")
    for arch_name, name, t, secs in totals:
        print(f"{arch_name:14} {name:13} {t['even_cycles'] / 1e6:>12.3f} "
              f"{t['uneven_cycles'] / 1e6:>10.3f} {t['uneven_cycles'] / t['even_cycles']:>7.4f} "
              f"{t['even_pJ'] / 1e9:>9.3f} {t['uneven_pJ'] / 1e9:>9.3f} "
              f"{t['uneven_pJ'] / t['even_pJ']:>7.4f} {secs:>7.0f}")
    print(f"\nlayers where uneven wins ({len(wins)}):")
    for arch_name, problem, a, b, why in wins:
        print(f"  {arch_name:14} {problem.name:16} cycles {b.cycles / a.cycles:.3f}x "
              f"energy {b.energy_pJ / a.energy_pJ:.3f}x: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
