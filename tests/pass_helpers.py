"""Helpers for the CoSAPass tests: hand-built valid mappings and one-operator Relax modules.

`random_mapping(problem, arch, rng)` spreads the problem's prime factors over the levels (spatial
factors only where the architecture allows them, within each fanout) and keeps the result only if
`tvm_cosa.validity` accepts it; otherwise every factor goes to the outermost level, which is
always valid (each inner tile is one point). The lowering tests use these instead of the solver,
so they exercise loop structures a solver would not pick.
"""

from __future__ import annotations

import random

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


def single_op_module(make_call, *arg_types):
    """A Relax module whose main applies one operator to its parameters."""
    from tvm import relax

    bb = relax.BlockBuilder()
    params = [relax.Var(f"p{i}", relax.TensorType(shape, dtype))
              for i, (shape, dtype) in enumerate(arg_types)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(make_call(*params)))
        bb.emit_func_output(out)
    return bb.get()


def conv_module(n, c, k, h, w, kernel, stride, pad, dilation, groups, layout, dtype):
    from tvm import relax

    data_shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    kernel_layout = "OIHW" if layout == "NCHW" else "OHWI"
    weight_shape = ((k, c // groups, kernel, kernel) if layout == "NCHW"
                    else (k, kernel, kernel, c // groups))
    out_dtype = "int32" if dtype == "int8" else "float32"
    return single_op_module(
        lambda x, wt: relax.op.nn.conv2d(x, wt, strides=stride, padding=pad, dilation=dilation,
                                         groups=groups, data_layout=layout,
                                         kernel_layout=kernel_layout, out_dtype=out_dtype),
        (data_shape, dtype), (weight_shape, dtype))


def matmul_module(a, b, dtype):
    from tvm import relax

    out_dtype = "int32" if dtype == "int8" else "float32"
    return single_op_module(lambda x, y: relax.op.matmul(x, y, out_dtype=out_dtype),
                            (a, dtype), (b, dtype))
