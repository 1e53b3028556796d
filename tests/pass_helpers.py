"""Helpers for the CoSAPass tests: hand-built valid mappings and small ONNX runs.

`random_mapping(problem, arch, rng)` spreads the problem's prime factors over the levels (spatial
factors only where the architecture allows them, within each fanout) and keeps the result only if
`tvm_cosa.validity` accepts it; otherwise every factor goes to the outermost level, which is
always valid (each inner tile is one point). The lowering tests use these instead of the solver,
so they exercise loop structures a solver would not pick.
"""

from __future__ import annotations

import random

import numpy as np

from tvm_cosa.mapping import LevelMapping, Mapping
from tvm_cosa.problem import prime_factors
from tvm_cosa.validity import assert_valid, is_valid


def outermost_mapping(problem, arch) -> Mapping:
    levels = [LevelMapping() for _ in arch.levels]
    levels[-1].temporal = dict(problem.sizes)
    return Mapping(levels)


def random_mapping(problem, arch, rng: random.Random, tries: int = 30) -> Mapping:
    for _ in range(tries):
        mapping = _draw(problem, arch, rng)
        if is_valid(mapping, problem, arch):
            return mapping
    mapping = outermost_mapping(problem, arch)
    assert_valid(mapping, problem, arch)
    return mapping


def _draw(problem, arch, rng) -> Mapping:
    levels = [LevelMapping() for _ in arch.levels]
    room = {i: list(arch.fanout(i)) for i in range(arch.num_levels)}
    for d, n in problem.sizes:
        for p in prime_factors(n):
            i = rng.randrange(arch.num_levels)
            lv, level = levels[i], arch.levels[i]
            axis = rng.choice((0, 1))
            allowed = (level.spatial_dims_x, level.spatial_dims_y)[axis]
            spatial_ok = allowed is None or d in problem.resolve_dims(allowed)
            if rng.random() < 0.5 and spatial_ok and room[i][axis] % p == 0:
                room[i][axis] //= p
                target = lv.spatial_x if axis == 0 else lv.spatial_y
            else:
                target = lv.temporal
            target[d] = target.get(d, 1) * p
    for lv in levels:
        order = list(problem.dims)
        rng.shuffle(order)
        lv.order = tuple(order)
    return Mapping(levels)


def run_onnx(model, inputs: dict) -> list:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


def run_relax(mod, inputs: list) -> list:
    import tvm
    from tvm import relax

    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [o.numpy() for o in out]


def max_rel_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(np.abs(want).max(), 1e-30)
    return float(np.abs(got - want).max() / scale)
