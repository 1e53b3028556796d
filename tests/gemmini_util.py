"""Shared helpers of the Gemmini tests: one-operator Relax modules, numpy references, and running a
lowered module on the functional model."""

import random
from pathlib import Path

import numpy as np

from tvm_cosa import LevelMapping, Mapping, check_mapping
from tvm_cosa.problem import prime_factors
from tvm_cosa.target.gemmini.dims import gemmini_dims

ACC = {"int8": "int32", "float32": "float32"}


def conv_module(xshape, wshape, *, dtype="int8", stride=(1, 1), pad=(0, 0, 0, 0),
                layout="NHWC", klayout="HWIO", groups=1, dilation=(1, 1)):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(xshape, dtype))
    w = relax.Var("w", relax.TensorType(wshape, dtype))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w, strides=stride, padding=pad, dilation=dilation,
                                           data_layout=layout, kernel_layout=klayout,
                                           groups=groups, out_dtype=ACC[dtype]))
            gv = bb.emit_output(y)
        bb.emit_func_output(gv)
    return bb.get()


def matmul_module(ashape, bshape, *, dtype="int8"):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(ashape, dtype))
    w = relax.Var("w", relax.TensorType(bshape, dtype))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w, out_dtype=ACC[dtype]))
            gv = bb.emit_output(y)
        bb.emit_func_output(gv)
    return bb.get()


def the_op(mod):
    from tvm_cosa.relax.extract import extract

    (op,) = extract(mod)
    return op


def lower_module(mod, mapping, arch, op=None):
    """The module legalized, its one PrimFunc lowered for Gemmini with `mapping`."""
    from tvm import relax, tirx

    from tvm_cosa.target.gemmini.lowering import lower

    op = op or the_op(mod)
    mod = relax.transform.LegalizeOps()(mod)
    (gv,) = [g for g, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)]
    mod[gv] = lower(mod[gv], op, mapping, arch)
    return mod


def run(mod, config, inputs, folder):
    """Run a lowered module on the functional model: (output, per-run counters). Each build gets
    a new file name: the dynamic loader would return an already loaded library of the same path."""
    import uuid

    import tvm

    from tvm_cosa.target.gemmini import codegen

    path = Path(folder) / f"{uuid.uuid4().hex}.so"
    codegen.export(mod, config, path)
    vm, fm = codegen.load(path, config)
    fm.reset()
    out = vm["main"](*[tvm.runtime.tensor(a) for a in inputs]).numpy()
    fm.check()
    return out, fm.counters()


def random_operands(rng, shapes, dtype):
    if dtype == "int8":
        return [rng.integers(-128, 128, size=s, dtype=np.int8) for s in shapes]
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def conv_ref(x, w, stride, pad, layout="NHWC", klayout="HWIO", groups=1, dilation=(1, 1)):
    """Direct convolution in int64 / float64, returned in the output layout."""
    acc = np.int64 if x.dtype == np.int8 else np.float64
    if layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    w = np.transpose(w, [klayout.index(c) for c in "HWIO"]).astype(acc)
    pt, pl, pb, pr = pad
    x = np.pad(x.astype(acc), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    _, h, wd, _ = x.shape
    kh, kw, ci, ko = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, ko), acc)
    kg = ko // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = x[:, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                          j * dw:j * dw + sw * (ow - 1) + 1:sw, g * ci:(g + 1) * ci]
                out[..., g * kg:(g + 1) * kg] += np.einsum(
                    "nhwc,ck->nhwk", patch, w[i, j, :, g * kg:(g + 1) * kg])
    if layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return out


def random_gemmini_mapping(problem, arch, seed, dim=16, tries=200):
    """A random valid weight-stationary mapping: every prime factor of every dimension on a random
    level (pixels may stream at the registers; the reduction / output channel may go spatial on
    X / Y up to `dim`), random loop orders; valid in words (check_mapping) and within the
    scratchpad / accumulator rows. None if no draw within `tries` is."""
    rng = random.Random(seed)
    d = gemmini_dims(problem)
    n = arch.num_levels
    acc = arch.spatial_levels[0]
    for _ in range(tries):
        levels = [LevelMapping() for _ in range(n)]
        for name, size in problem.sizes:
            for p in prime_factors(size):
                slots = list(range(acc, n))
                if name in d.pixels:
                    slots += list(range(acc))
                if name in (d.reduction, d.output_channel):
                    slots.append("S")
                slot = rng.choice(slots)
                if slot == "S":
                    side = levels[acc].spatial_x if name == d.reduction else levels[acc].spatial_y
                    if side.get(name, 1) * p <= dim:
                        side[name] = side.get(name, 1) * p
                        continue
                    slot = rng.choice(range(acc, n))
                lv = levels[slot]
                lv.temporal[name] = lv.temporal.get(name, 1) * p
        for lv in levels:
            order = list(problem.dims)
            rng.shuffle(order)
            lv.order = tuple(order)
        mapping = Mapping(levels)
        if not check_mapping(mapping, problem, arch) and _fits_rows(problem, mapping, arch):
            return mapping
    return None


def _fits_rows(problem, mapping, arch) -> bool:
    """Also within the real capacity in rows (narrow chunks leave rows partly empty)."""
    from tvm_cosa.target.gemmini.config import config_for
    from tvm_cosa.target.gemmini.plan import UnsupportedMapping, make_plan

    try:
        make_plan(problem, mapping, arch, config_for(arch))
    except UnsupportedMapping:
        return False
    return True
