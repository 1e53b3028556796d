#!/usr/bin/env python3
"""Cross-check of the built-in cost model with ZigZag on even and uneven mappings.

For each ResNet-50 layer (tests/data/workloads/resnet50) on a Gemmini-like and an Eyeriss-like
architecture: the schedule CoSA picks (even), and uneven variants of it (every single boundary
move the validity checker accepts, plus, with --combined, random combinations of them), each
evaluated by our model and by ZigZag's CostModelEvaluation on the same per-operand mapping.
Prints per architecture and layer how many counts both models define the same way agree, and
how far the counts they define differently are apart (docs/zigzag.md says why).

Needs `pip install zigzag-dse six` (not a dependency of tvm_cosa).

    python bench/zigzag_check.py                     # all 24 layers, both architectures
    python bench/zigzag_check.py --layers 3 --detail _outputs_input.11
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa import Mapping, Problem, check_mapping, load_architecture, preset, schedule  # noqa
from tvm_cosa.uneven import single_moves  # noqa: E402

WORKLOADS = ROOT / "tests" / "data" / "workloads" / "resnet50"
EYERISS = ROOT / "tests" / "data" / "arch" / "eyeriss_like.tree.yaml"
# Eyeriss' dataflow: one scratchpad per operand in each PE, ifmaps and psums in the global buffer
EYERISS_KEEPS = {"psum_spad": ["Outputs"], "weights_spad": ["Weights"],
                 "ifmap_spad": ["Inputs"], "DummyBuffer": [], "shared_glb": ["Inputs", "Outputs"]}


def architectures():
    return {"gemmini": preset("gemmini"),
            "eyeriss": load_architecture(EYERISS).with_bypass(EYERISS_KEEPS)}


def variants(mapping, problem, arch, combined, rng):
    """(label, mapping): the even one, each accepted single move, `combined` random combos."""
    moves = single_moves(mapping, problem, arch)
    out = [("even", mapping)]
    out += [(f"{t[0]}@{c}->{b}", Mapping(mapping.levels, {(t, c): b})) for (t, c), b in moves]
    for _ in range(combined):
        picked = dict(rng.sample(moves, min(len(moves), 3)))
        m = Mapping(mapping.levels, picked)
        while check_mapping(m, problem, arch) and m.tile_levels:
            m.tile_levels.pop(rng.choice(sorted(m.tile_levels)))
        if len(m.tile_levels) > 1:
            out.append(("combined", m))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=None, help="first N layers only")
    parser.add_argument("--combined", type=int, default=3,
                        help="random combinations of boundary moves per layer")
    parser.add_argument("--detail", default=None, help="print every count of this layer")
    args = parser.parse_args(argv)
    try:
        from tvm_cosa.zigzag import compare
    except ImportError:
        sys.exit("needs ZigZag: pip install zigzag-dse six")
    logging.disable(logging.WARNING)  # ZigZag logs every evaluation
    rng = random.Random(0)
    files = sorted(WORKLOADS.glob("*.yaml"))[:args.layers]
    print(f"{'arch':8} {'layer':20} {'mappings':>8} {'uneven':>6} {'same-def counts':>15} "
          f"{'agree':>6} {'window-def counts':>17} {'max rel. diff there':>19}")
    totals = {}
    for arch_name, arch in architectures().items():
        for f in files:
            problem = Problem.from_yaml(f)
            mapping = schedule(problem, arch, solver="highs", time_limit=30)
            same = agree = other = 0
            worst = 0.0
            runs = variants(mapping, problem, arch, args.combined, rng)
            for label, m in runs:
                rows = compare(m, problem, arch)
                for r in rows:
                    if r.same_definition:
                        same += 1
                        agree += r.equal
                    else:
                        other += 1
                        if r.zigzag or r.ours:
                            worst = max(worst, abs(r.ours - r.zigzag) / max(r.ours, r.zigzag))
                if problem.name == args.detail:
                    print(f"\n{arch_name} {problem.name} {label} {m.tile_levels}")
                    for r in rows:
                        flag = "" if r.equal else (" DIFFERS" if r.same_definition
                                                   else " (definition differs)")
                        print(f"  {r.level:12} {r.tensor:8} {r.quantity:36} {r.ours:>14g} "
                              f"{r.zigzag:>14g}{flag}")
            t = totals.setdefault(arch_name, [0, 0, 0, 0])
            t[0] += len(runs)
            t[1] += same
            t[2] += agree
            t[3] += len(runs) - 1
            print(f"{arch_name:8} {problem.name:20} {len(runs):>8} {len(runs) - 1:>6} "
                  f"{same:>15} {agree:>6} {other:>17} {worst:>19.3f}")
    print()
    for arch_name, (n, same, agree, uneven) in totals.items():
        print(f"{arch_name}: {n} mappings ({uneven} uneven), {agree} of {same} counts defined "
              f"the same way agree exactly")
    return 0 if all(t[1] == t[2] for t in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
