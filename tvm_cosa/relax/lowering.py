"""Apply a CoSA mapping to the PrimFunc TVM legalized a conv2d / matmul into (TIR schedule API).

`lower_generic(prim_func, op, mapping, arch)`:
1. finds the compute block (the reduction block) and maps its loops to the Problem's dimensions by
   meaning: the output buffer's indices follow the data layout, the weight buffer's the kernel
   layout (conv2d); for matmul the output is [batch..., M, N] and K is the reduction. A grouped
   convolution is first rebuilt with separate G and K output axes (`grouped_conv_primfunc`);
   a matmul must have one axis per Problem dimension (CoSAPass reshapes it first);
2. splits every loop into one factor per memory level (temporal, then spatial X, then spatial Y),
   outermost level first, and reorders the nest: per level, the temporal loops in the level's
   permutation then its spatial loops. Every loop is annotated `cosa.level` with its level name;
   spatial loops are marked as the PE array with `cosa.spatial` = "<level>.X|Y" (the axis of the
   fanout below that level they are unrolled onto);
3. adds one cache stage per (tensor, level) the mapping keeps below the outermost level
   (`cache_read` for Inputs and Weights, `cache_write` for Outputs) with storage scope
   `global.<level name>`, placed at the innermost loop outside that level's tile.

Loop variables are int64 after legalization; the schedule works on loop handles, so that is
transparent. A failure raises `LoweringError`; the pass then keeps TVM's default schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import CoSAError
from ..problem import INPUTS, OUTPUTS, WEIGHTS

SCHEDULED_ATTR = "tirx.is_scheduled"
OPAQUE_PATTERN = 8  # relax OpPatternKind.kOpaque: keeps the scheduled function out of FuseTIR
REDUCE = 2  # tirx IterVar.CommReduce


class LoweringError(CoSAError):
    """The mapping could not be applied to the PrimFunc (the pass falls back to TVM's default)."""


def scope_name(level_name: str) -> str:
    """Storage scope of a level's buffers: `global.<name>` (llvm and c treat it as memory)."""
    return "global." + (re.sub(r"[^0-9a-zA-Z_]+", "_", level_name.strip()).strip("_").lower()
                        or "level")


@dataclass
class _Loop:
    rv: object  # LoopRV
    dim: str
    level: int  # architecture level index; num_levels for loops of extent 1 (outside all)
    kind: str  # "T" temporal, "X" / "Y" spatial, "U" unit


def lower_generic(prim_func, op, mapping, arch):
    """The PrimFunc with the CoSA schedule applied. Raises LoweringError if it cannot be."""
    from tvm import s_tir

    _check_factors(op, mapping, arch)
    original = prim_func
    try:
        if op.kind == "conv2d" and op.groups != 1:
            prim_func = grouped_conv_primfunc(prim_func, op)
        sch = s_tir.Schedule(prim_func)
        block = _compute_block(sch)
        dim_loops = _dim_loops(sch, block, op)
        loops = _tile(sch, dim_loops, op.problem, mapping, arch)
        _add_cache_stages(sch, block, loops, op, mapping, arch)
        func = sch.mod["main"]
    except LoweringError:
        raise
    except Exception as err:  # a TVM ScheduleError or TVMError: report it, keep the default
        raise LoweringError(f"{type(err).__name__}: {_first_line(err)}") from err
    return mark_scheduled(with_symbol_of(func, original))


def with_symbol_of(func, original):
    """`func` with `original`'s global symbol, or none when it had none (legalized PrimFuncs are
    private). A function rebuilt by `te.create_prim_func` or wrapped by a schedule may come back
    named "main"; several of those in one module fail the build ("duplicate global symbol")."""
    symbol = original.attrs.get("global_symbol") if original.attrs is not None else None
    if symbol is not None:
        return func.with_attr("global_symbol", symbol)
    if func.attrs is not None and "global_symbol" in func.attrs:
        return func.without_attr("global_symbol")
    return func


def _check_factors(op, mapping, arch):
    """The mapping must be for this layer and architecture (its buffer sizes are the solver's
    and the checker's business; the loop nest only needs the factors to multiply out)."""
    from ..validity import check_mapping

    if op.problem is None:
        raise LoweringError(f"{op.kind} is not supported: {op.reason}")
    structural = ("level_count", "unknown_dim", "factor_product")
    bad = [str(v) for v in check_mapping(mapping, op.problem, arch) if v.kind in structural]
    if bad:
        raise LoweringError("mapping does not fit the layer: " + "; ".join(bad))


def mark_scheduled(func):
    """Tell later passes not to reschedule (dlight, meta-schedule) or fuse the function."""
    return func.with_attr(SCHEDULED_ATTR, True).with_attr("op_pattern", OPAQUE_PATTERN)


def _first_line(err) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        if "Error" in line and ":" in line:
            return line.strip()[:300]
    return text.splitlines()[-1][:300] if text else repr(err)


# ---- finding the block and its loops --------------------------------------------------------
def _compute_block(sch):
    """The single reduction block of the function (conv2d_nchw, grouped_conv2d, matmul...)."""
    candidates = [blk for blk in sch.get_child_blocks(sch.get_sblock("root"))
                  if any(int(iv.iter_type) == REDUCE for iv in sch.get(blk).iter_vars)]
    if len(candidates) != 1:
        raise LoweringError(f"expected one reduction block, found {len(candidates)}")
    return candidates[0]


def _block_var_loops(sch, block) -> dict:
    """Block iter var -> the LoopRV it is bound to (legalized blocks bind each var to one loop)."""
    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body  # legalized nests are perfect: the realize is the body
    if not hasattr(realize, "iter_values") or not realize.block.same_as(sch.get(block)):
        raise LoweringError("the compute block is not the only statement of its loop nest")
    loop_vars = [(sch.get(lp).loop_var, lp) for lp in loops]
    loop_of_var = {}
    for iv, value in zip(realize.block.iter_vars, realize.iter_values):
        match = [lp for var, lp in loop_vars if var.same_as(value)]
        if len(match) != 1:
            raise LoweringError(f"block var {iv.var.name} is bound to {value}, not to one loop")
        loop_of_var[iv.var] = match[0]
    return loop_of_var


def _buf(region):
    """The buffer of a block read/write region (`source` in TVM 0.27, `buffer` before)."""
    buffer = getattr(region, "buffer", None)
    return buffer if buffer is not None else region.source


def _plain_vars(region) -> list:
    """The block vars indexing a buffer region, when every index is a single var."""
    from tvm import tirx

    out = []
    for rng in region.region:
        if not isinstance(rng.min, tirx.Var):
            return []
        out.append(rng.min)
    return out


def _dim_loops(sch, block, op) -> dict:
    """Problem dimension -> LoopRV, splitting or fusing TVM's loops where the Problem needs it."""
    blk = sch.get(block)
    loop_of = _block_var_loops(sch, block)
    out_vars = _plain_vars(blk.writes[0])
    reads = [r for r in blk.reads if not _buf(r).same_as(_buf(blk.writes[0]))]
    if not out_vars:
        raise LoweringError("output indices are not plain loop variables")
    if op.kind == "conv2d" and op.groups != 1:
        dims = _grouped_conv_dims(op, blk, out_vars, loop_of)
    elif op.kind == "conv2d":
        dims = _conv_dims(op, out_vars, reads, loop_of)
    elif op.kind == "matmul":
        dims = _matmul_dims(sch, op, blk, out_vars, loop_of)
    else:
        raise LoweringError(f"no lowering for {op.kind}")
    size = op.problem.size
    for d, lp in dims.items():
        extent = int(sch.get(lp).extent)
        if extent != size[d]:
            raise LoweringError(f"loop for {d} has extent {extent}, the problem has {d}={size[d]}")
    missing = set(size) - set(dims)
    if missing:
        raise LoweringError(f"no loop found for dimensions {sorted(missing)}")
    return dims


def _conv_dims(op, out_vars, reads, loop_of) -> dict:
    """conv2d: N, output channels (GK), Q (out height), P (out width) from the output's layout;
    C, S (filter height), R (filter width) from the weight's layout."""
    if len(out_vars) != 4:
        raise LoweringError(f"conv2d output has {len(out_vars)} indices")
    out = dict(zip(op.layout, out_vars))
    weight = [_plain_vars(r) for r in reads]
    weight = [w for w in weight if len(w) == 4]
    if len(weight) != 1:
        raise LoweringError("could not tell the weight buffer from the input buffer")
    w = dict(zip(op.kernel_layout, weight[0]))
    by_meaning = {"N": out["N"], "K": out["C"], "Q": out["H"], "P": out["W"], "C": w["I"],
                  "S": w["H"], "R": w["W"]}
    return {d: loop_of[v] for d, v in by_meaning.items()}


def _grouped_conv_dims(op, blk, out_vars, loop_of) -> dict:
    """The block of `grouped_conv_primfunc`: output axes in the layout with C as (G, K), then
    the reductions C, S (filter height), R (filter width)."""
    layout = op.layout.replace("C", "GK")
    reduce_vars = [iv.var for iv in blk.iter_vars if int(iv.iter_type) == REDUCE]
    if len(out_vars) != 5 or len(reduce_vars) != 3:
        raise LoweringError("not the grouped convolution block this lowering builds")
    out = dict(zip(layout, out_vars))
    by_meaning = {"N": out["N"], "G": out["G"], "K": out["K"], "Q": out["H"], "P": out["W"],
                  "C": reduce_vars[0], "S": reduce_vars[1], "R": reduce_vars[2]}
    return {d: loop_of[v] for d, v in by_meaning.items()}


def grouped_conv_primfunc(prim_func, op):
    """The grouped conv2d of `prim_func` (same parameters) computed over separate G and K axes.

    TVM's grouped convolution loops over all output channels at once (channel = g * K + k).
    A tile that spans several groups but part of each group's channels is then strided along
    that axis, and TVM's cache stages copy bounding boxes, so a write-back stage would copy
    outputs not computed yet. This equivalent function computes into a buffer with G and K axes
    (every tile a box) and copies it to the output in the original layout at the end."""
    from tvm import te, tirx

    data_buf, weight_buf, out_buf = prim_func.params  # TVM 0.27: the params are the buffers
    data = te.placeholder(data_buf.shape, str(data_buf.dtype), name="data")
    weight = te.placeholder(weight_buf.shape, str(weight_buf.dtype), name="weight")
    out_dtype = str(out_buf.dtype)
    layout, kernel_layout = op.layout, op.kernel_layout
    size = op.problem.size
    groups, c_per, k_per = op.groups, size["C"], size["K"]
    top, left, bottom, right = op.padding
    (sh, sw), (dh, dw) = op.strides, op.dilation
    d_shape = dict(zip(layout, data.shape))

    def padded_at(*idx):
        pos = dict(zip(layout, idx))
        h, w = pos["H"] - top, pos["W"] - left
        inside = tirx.all(h >= 0, h < d_shape["H"], w >= 0, w < d_shape["W"])
        src = [{"H": h, "W": w}.get(axis, pos[axis]) for axis in layout]
        return tirx.if_then_else(inside, data(*src), tirx.const(0, data.dtype))

    pad_shape = [{"H": d_shape["H"] + top + bottom, "W": d_shape["W"] + left + right}.get(
        axis, d_shape[axis]) for axis in layout]
    padded = te.compute(pad_shape, padded_at, name="pad_temp")
    rc = te.reduce_axis((0, c_per), name="rc")
    ry = te.reduce_axis((0, size["S"]), name="ry")
    rx = te.reduce_axis((0, size["R"]), name="rx")
    o_shape = dict(zip(layout, out_buf.shape))
    gk_layout = layout.replace("C", "GK")
    gk_shape = [{"G": groups, "K": k_per}.get(axis) or o_shape[axis] for axis in gk_layout]

    def conv_at(*idx):
        pos = dict(zip(gk_layout, idx))
        src = {"N": pos["N"], "C": pos["G"] * c_per + rc, "H": pos["H"] * sh + ry * dh,
               "W": pos["W"] * sw + rx * dw}
        wgt = {"O": pos["G"] * k_per + pos["K"], "I": rc, "H": ry, "W": rx}
        product = (padded(*[src[a] for a in layout]).astype(out_dtype)
                   * weight(*[wgt[a] for a in kernel_layout]).astype(out_dtype))
        return te.sum(product, axis=[rc, ry, rx])

    grouped = te.compute(gk_shape, conv_at, name="grouped_conv2d")

    def copy_at(*idx):
        pos = dict(zip(layout, idx))
        pos["G"], pos["K"] = pos["C"] // k_per, pos["C"] % k_per
        return grouped(*[pos[a] for a in gk_layout])

    out = te.compute(out_buf.shape, copy_at, name=out_buf.name)
    # create_prim_func names the function "main": lower_generic gives back the original's symbol
    func = te.create_prim_func([data, weight, out])
    for key, value in (prim_func.attrs or {}).items():
        func = func.with_attr(key, value)
    return func


def _matmul_dims(sch, op, blk, out_vars, loop_of) -> dict:
    """matmul: output [batch..., M, N]; K is the reduction var. The batch axes become B, or rows
    of M when the weights are shared by the whole batch. At most one output axis may feed each
    Problem dimension (others of extent 1): a tile of a dimension fused from two axes is strided
    in the output, which TVM's bounding-box cache stages cannot write back. CoSAPass reshapes
    such operands to 2-D / 3-D before legalizing (`canonical_matmul_shapes`)."""
    reduce_vars = [iv.var for iv in blk.iter_vars if int(iv.iter_type) == REDUCE]
    if len(reduce_vars) != 1 or len(out_vars) < 2:
        raise LoweringError("matmul block is not [batch..., M, N] x K")
    batch_loops = [loop_of[v] for v in out_vars[:-2]]
    m_loop, n_loop = loop_of[out_vars[-2]], loop_of[out_vars[-1]]
    wide = [lp for lp in batch_loops if int(sch.get(lp).extent) > 1]
    if len(wide) > (op.batch_mode == "batch"):
        raise LoweringError(f"matmul output {op.shapes['output']} has several axes for one "
                            f"Problem dimension; reshape it to {canonical_matmul_shapes(op)[2]}")
    dims = {"N": n_loop, "K": loop_of[reduce_vars[0]]}
    if op.batch_mode == "batch":
        dims["B"] = sch.fuse(*batch_loops) if len(batch_loops) > 1 else batch_loops[0]
        dims["M"] = m_loop
    else:
        dims["M"] = sch.fuse(*batch_loops, m_loop) if batch_loops else m_loop
    return dims


def canonical_matmul_shapes(op) -> tuple:
    """(input, weight, output) shapes with one axis per Problem dimension: (M, K) x (K, N), or
    (B, M, K) x (B, K, N) for a batched matmul."""
    size = op.problem.size
    if "B" in size:
        b = size["B"]
        return (b, size["M"], size["K"]), (b, size["K"], size["N"]), (b, size["M"], size["N"])
    return (size["M"], size["K"]), (size["K"], size["N"]), (size["M"], size["N"])


# ---- tiling ---------------------------------------------------------------------------------
def _tile(sch, dim_loops, problem, mapping, arch) -> list[_Loop]:
    """Split each loop into its per-level factors and reorder; returns the loops outermost first."""
    top = arch.num_levels
    pieces: dict[tuple, _Loop] = {}  # (level, kind, dim) -> loop
    unit: list[_Loop] = []
    for d in problem.dims:
        factors = []  # (level, kind, factor), outermost first
        for i in reversed(range(arch.num_levels)):
            lv = mapping.levels[i]
            for kind, f in (("T", lv.temporal.get(d, 1)), ("X", lv.spatial_x.get(d, 1)),
                            ("Y", lv.spatial_y.get(d, 1))):
                if f > 1:
                    factors.append((i, kind, f))
        loop = dim_loops[d]
        if not factors:
            unit.append(_Loop(loop, d, top, "U"))
            continue
        rvs = [loop] if len(factors) == 1 else sch.split(loop, factors=[f for _, _, f in factors])
        for (i, kind, _), rv in zip(factors, rvs):
            pieces[(i, kind, d)] = _Loop(rv, d, i, kind)

    ordered = list(unit)
    for i in reversed(range(arch.num_levels)):
        lv = mapping.levels[i]
        ordered += [pieces[(i, "T", d)] for d in reversed(lv.full_order(problem.dims))
                    if (i, "T", d) in pieces]
        ordered += [pieces[(i, k, d)] for k in ("X", "Y") for d in problem.dims
                    if (i, k, d) in pieces]
    sch.reorder(*[lp.rv for lp in ordered])
    for lp in ordered:
        if lp.kind == "U":
            continue
        sch.annotate(lp.rv, "cosa.level", arch.levels[lp.level].name)
        if lp.kind in ("X", "Y"):
            sch.annotate(lp.rv, "cosa.spatial", f"{arch.levels[lp.level].name}.{lp.kind}")
    return ordered


# ---- cache stages ---------------------------------------------------------------------------
def _at_loop(loops: list[_Loop], level: int, boundary: int):
    """The innermost loop outside the tile kept at `level`, which spans the temporal loops of
    levels 0..boundary and the spatial ones of levels 0..level (uneven mapping when they differ,
    `tvm_cosa.uneven`; None: the whole nest)."""
    outside = [lp for lp in loops if lp.level > (level if lp.kind in ("X", "Y") else boundary)]
    return outside[-1].rv if outside else None


def stage_levels(mapping, arch, tensor) -> list[int]:
    """Levels below the outermost that keep `tensor` (each gets a cache stage), outermost first."""
    return [i for i in reversed(range(arch.num_levels - 1)) if tensor in mapping.kept(arch, i)]


def _add_cache_stages(sch, block, loops, op, mapping, arch):
    blk = sch.get(block)
    out_buffer = _buf(blk.writes[0])
    weight_buffer, input_buffer = _classify_reads(blk, out_buffer, op)
    for tensor, buffer in ((INPUTS, input_buffer), (WEIGHTS, weight_buffer)):
        _read_stages(sch, block, buffer, loops, tensor, mapping, arch)
    _write_stages(sch, block, loops, op, mapping, arch)


def _classify_reads(blk, out_buffer, op):
    """(weight buffer, input buffer) of the compute block, told apart by meaning: the input is
    the read indexed by the output's row var (conv: output height H; matmul: M), the weight the
    one that is not."""
    reads = [r for r in blk.reads if not _buf(r).same_as(out_buffer)]
    if len(reads) != 2:
        raise LoweringError(f"compute block reads {len(reads)} buffers, expected 2")
    out_vars = _plain_vars(blk.writes[0])
    if op.kind == "conv2d":
        layout = op.layout.replace("C", "GK") if op.groups != 1 else op.layout
        row = out_vars[layout.index("H")]
    else:
        row = out_vars[-2]
    indexed = [_uses(r, row) for r in reads]
    if indexed.count(True) != 1:
        raise LoweringError("could not tell the weight buffer from the input buffer")
    i = indexed.index(True)
    return _buf(reads[1 - i]), _buf(reads[i])


def _uses(region, var) -> bool:
    from tvm.tirx.analysis import undefined_vars

    return any(v.same_as(var) for rng in region.region for v in undefined_vars(rng.min))


def _read_index(sch, block, buffer) -> int:
    for idx, region in enumerate(sch.get(block).reads):
        if _buf(region).same_as(buffer):
            return idx
    raise LoweringError(f"block does not read {buffer.name}")


def _read_stages(sch, block, buffer, loops, tensor, mapping, arch):
    stages = []  # outermost first; each reads the previous stage's buffer
    for i in stage_levels(mapping, arch, tensor):
        stage = sch.cache_read(block, _read_index(sch, block, buffer),
                               scope_name(arch.levels[i].name))
        buffer = _buf(sch.get(stage).writes[0])
        stages.append((stage, _at_loop(loops, i, mapping.tile_level(tensor, i))))
    # Innermost first: compute_at needs the stage's consumer to be under the loop already.
    for stage, at in reversed(stages):
        if at is not None:
            sch.compute_at(stage, at)


def _write_stages(sch, block, loops, op, mapping, arch):
    stages = []  # outermost first
    for i in stage_levels(mapping, arch, OUTPUTS):
        stage = sch.cache_write(block, 0, scope_name(arch.levels[i].name))
        stages.append((stage, _at_loop(loops, i, mapping.tile_level(OUTPUTS, i))))
    # Innermost first: reverse_compute_at needs the stage's producer under the loop already.
    # Partial sums across outer reduction loops stay correct: TVM allocates a written reduction
    # buffer above its outermost reduction loop.
    for stage, at in reversed(stages):
        if at is not None:
            sch.reverse_compute_at(stage, at)
