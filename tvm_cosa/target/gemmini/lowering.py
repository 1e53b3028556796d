"""Lower a CoSA-scheduled conv2d / matmul PrimFunc onto the Gemmini ISA (the pass's target hook).

`lower(prim_func, op, mapping, arch)` keeps the PrimFunc's signature and replaces its body with a
program for a weight-stationary Gemmini array, built from the mapping's plan (plan.py):

- host prologue: the input copied into a zero-padded NHWC buffer when the layer pads or is NCHW,
  the weights into HWIO when they are not (plain TIR loops on the CPU);
- `config_ex` (WS, A stride = the conv stride), `config_ld` for the three move-in queues,
  `config_st`, `flush`;
- the host loops of every level from DRAM down to the accumulator in the mapping's order; at each
  tile's move-in point, `mvin` (inputs), `mvin2` (weights) move its rows into the scratchpad, and
  the accumulator tile is either fresh (the first compute overwrites it) or reloaded with `mvin3`
  from the partial sums in DRAM (after a `fence`); after the loops inside it, `mvout` writes the
  raw int32 / float sums back;
- innermost, per DIM-row block of the register-level pixels: `preload` (the weights block, or
  GARBAGE_ADDR to keep the weights already in the array) and `compute_preloaded` /
  `compute_accumulated`, writing to the accumulator with overwrite on the first reduction step
  and accumulate after;
- `fence`, then the functional model's status is asserted (an address or capacity error raises).

Two variants replace parts of this program (`_emitter` picks one): where a CoSA tile is a
matrix product that fits half the memories, one `gemmini_loop_ws` per tile instead of the
commands inside it (loops.py); for an output-stationary configuration, chains of computes with
the outputs held in the PEs (output_stationary.py). Depthwise convolutions are grouped ones with
one channel per group (a group loop and DRAM strides), as gemmini.h's tiled_conv_dw runs them.

Scratchpad and accumulator row addresses come from the tiles of the mapping (plan.TileLayout).
A layer or mapping this cannot run raises `UnsupportedMapping` (a NotImplementedError): the pass
then applies its generic lowering, and the layer runs on the CPU.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from ...problem import INPUTS, OUTPUTS, WEIGHTS
from . import isa
from .config import DTYPES, GemminiConfig, config_for
from .dims import NotAGemminiLayer
from .plan import Plan, UnsupportedMapping, make_plan, pad_channels

GARBAGE = -1
ACC_BIT, ACCUMULATE_BIT, FULL_BIT = -(1 << 31), 1 << 30, 1 << 29
WEIGHT_STATIONARY = 1
DATAFLOW_CODE = {"OS": 0, "WS": WEIGHT_STATIONARY}  # config_ex's dataflow bit
NO_ACTIVATION, RELU = 0, 1  # config_st's activation (gemmini.h)

# op id -> what it is, for per-operator counters (filled by every lowering in this process)
OP_REGISTRY: dict[int, dict] = {}
# op id -> (prim_func, op, mapping, arch) it was lowered from, so that a later Relax rewrite
# (relax/fuse_requant.py) can lower the same operator again with its requantization
LOWERED_FROM: dict[int, tuple] = {}
BIAS = "Bias"  # the DRAM view of a requantized operator's bias (requant.py)


def lower(prim_func, op, mapping, arch, requant=None):
    """The PrimFunc running `op` on the Gemmini array `arch` with `mapping`'s tiles. With a
    `requant.Requant`, the PrimFunc takes (input, weight, [bias,] output int8) and the array
    writes the requantized outputs (UnsupportedMapping when the plan cannot)."""
    config = config_for(arch)
    problem = op.problem
    if problem is None:
        raise UnsupportedMapping(f"{op.kind}: {op.reason or 'no problem'}")
    params = list(prim_func.params)
    if len(params) != 3:
        raise UnsupportedMapping(f"expected a PrimFunc (input, weight, output), got {len(params)} "
                                 "parameters")
    _check_dtypes(params, config)
    scheduled = _scheduled_problem(problem, mapping, config)
    try:
        plan = make_plan(scheduled, mapping, arch, config, sizes=problem.size)
    except NotAGemminiLayer as err:
        raise UnsupportedMapping(str(err)) from None
    identity = f"{op.function}:{op.index}:{problem.key()}"
    signature = prim_func
    if requant is None:
        LOWERED_FROM[zlib.crc32(identity.encode()) & 0x7FFFFFFF] = (prim_func, op, mapping, arch)
    else:
        from .requant import check_requant, fused_signature

        check_requant(plan, requant)
        identity += f":{requant.key()}"
        signature = fused_signature(prim_func, _output_channels(op, params[2]), requant.bias)
        if requant.bias:
            data, weight, bias, out = signature.params
        else:
            data, weight, out = signature.params
        params = [data, weight, out]
    op_id = zlib.crc32(identity.encode()) & 0x7FFFFFFF
    views, prologue, epilogue, allocs = _dram_views(op, plan, params)
    if requant is not None and requant.bias:
        views[BIAS] = _bias_view(op, plan, bias)
    emitter, loop_note = _emitter(plan, views, config, requant, op)
    body = emitter.program(op_id, op)
    stmts = prologue + body + epilogue
    OP_REGISTRY[op_id] = {"name": op.name, "index": op.index, "kind": op.kind,
                          "shape": op.shape_text(), "plan": plan.describe(),
                          "problem": " ".join(f"{d}={n}" for d, n in problem.sizes),
                          "spad_rows": plan.spad_rows, "acc_rows": plan.acc_rows,
                          "loop_ws": loop_note,
                          "requant": None if requant is None else {
                              "scale": float(requant.scale), "relu": requant.relu,
                              "bias": requant.bias},
                          # the operator's attributes, for per-operator references (spike.py)
                          "attrs": {"layout": op.layout, "kernel_layout": op.kernel_layout,
                                    "strides": tuple(op.strides), "padding": tuple(op.padding),
                                    "dilation": tuple(op.dilation), "groups": op.groups}}
    func = signature.with_body(_root(stmts, allocs))
    func = func.with_attr("gemmini.op_id", op_id)
    return _mark_scheduled(func)


def _emitter(plan, views, config, requant=None, op=None):
    """The program's emitter: one gemmini_loop_ws (loops.py) or, for requantized
    convolutions, one gemmini_loop_conv_ws (conv_loops.py) per CoSA tile where the tile allows
    it, else every command; and a note saying which and why."""
    from . import loops

    if requant is not None:  # int8 outputs: loop_conv_ws, else loop_ws, where a tile allows
        from . import conv_loops

        if not loops.enabled():
            emitter, note = _Emitter(plan, views, config), "off"
        else:
            tile = conv_loops.loop_conv_ws_tile(plan, views, op) if op.kind == "conv2d" \
                else "not a convolution"
            if not isinstance(tile, str):
                return (conv_loops.loop_conv_ws_emitter(_Emitter)(plan, views, config, tile,
                                                                  requant), "loop_conv_ws")
            ws_tile = loops.loop_ws_tile(plan, views)
            if not isinstance(ws_tile, str):
                emitter = loops.loop_ws_emitter(_Emitter)(plan, views, config, ws_tile)
                emitter.requant = requant
                return emitter, "loop_ws"
            emitter = _Emitter(plan, views, config)
            note = f"loop_conv_ws: {tile}; loop_ws: {ws_tile}" if op.kind == "conv2d" else ws_tile
        emitter.requant = requant
        return emitter, note
    if plan.dataflow == "OS":
        from .output_stationary import os_emitter

        return os_emitter(_Emitter)(plan, views, config), "output-stationary (loop_ws is WS)"
    if not loops.enabled():
        return _Emitter(plan, views, config), "off"
    tile = loops.loop_ws_tile(plan, views)
    if isinstance(tile, str):
        return _Emitter(plan, views, config), tile
    return loops.loop_ws_emitter(_Emitter)(plan, views, config, tile), "loop_ws"


def _scheduled_problem(problem, mapping, config):
    """The problem the mapping was made for: the layer, or the layer with padded channels."""
    for candidate in (problem, pad_channels(problem, config.dim)):
        if all(mapping.factor_product(d) == n for d, n in candidate.sizes):
            return candidate
    got = {d: mapping.factor_product(d) for d in problem.dims}
    raise UnsupportedMapping(f"the mapping's factors {got} match neither {problem} nor its "
                             f"channels padded to multiples of {config.dim}")


def _output_channels(op, out) -> int:
    """Output channels of the operator (the length of its bias)."""
    shape = _shape(out)
    if op.kind == "conv2d":
        return dict(zip(op.layout, shape))["C"]
    return shape[-1]


def _bias_view(op, plan, bias):
    """The bias as a DRAM view over the output's axes: stride 1 along the output channel (and
    the channels of a group along the group axis), 0 along every other axis, so the rows of an
    accumulator tile all read the same bias row (mvin3 with a DRAM row stride of 0)."""
    problem, dims = plan.problem, plan.dims
    t = problem.tensor(OUTPUTS)
    if op.kind == "conv2d":
        roles = _conv_roles(problem, dims)[OUTPUTS]
        per_group = plan.sizes[dims.output_channel]
        strides = {i: {"out_ch": 1, "group": per_group}.get(r, 0) for i, r in enumerate(roles)}
    else:
        strides = {i: int(i == len(t.axes) - 1) for i in range(len(t.axes))}
    return DramView(bias, strides, 4)


def _check_dtypes(params, config: GemminiConfig):
    data, weight, out = (str(p.dtype) for p in params)
    if data != config.dtype or weight != config.dtype:
        raise UnsupportedMapping(
            f"operands {data} x {weight}; {config.name} computes {config.dtype} "
            f"(use GemminiConfig(dtype={data!r}) for {data} layers)" if data in DTYPES else
            f"operands {data} x {weight}; Gemmini computes int8 or float32")
    if out != config.acc_dtype:
        raise UnsupportedMapping(f"output {out}; the accumulator holds {config.acc_dtype}")


def _mark_scheduled(func):
    try:
        from ...relax.lowering import mark_scheduled
    except ImportError:  # the pass is not installed: set the same attributes
        return func.with_attr("tirx.is_scheduled", True).with_attr("op_pattern", 8)
    return mark_scheduled(func)


def _root(stmts, allocs):
    from tvm import s_tir, tirx

    body = isa.with_declarations(tirx.SeqStmt(stmts) if len(stmts) > 1 else stmts[0])
    return s_tir.SBlockRealize([], True, s_tir.SBlock([], [], [], "root", body,
                                                      alloc_buffers=allocs))


# ---- DRAM side ------------------------------------------------------------------------------
@dataclass
class DramView:
    """Where a tensor's elements are in DRAM: a buffer and an element stride per tensor axis."""

    buffer: object
    strides: dict  # tensor axis index -> elements
    elem_bytes: int


def _compact_strides(shape) -> list[int]:
    out, s = [], 1
    for n in reversed(shape):
        out.append(s)
        s *= n
    return out[::-1]


def _shape(buf) -> tuple:
    return tuple(int(n) for n in buf.shape)


def _dram_views(op, plan: Plan, params):
    """DRAM views of the three tensors, and the host code that stages them when needed."""
    if op.kind == "conv2d":
        return _conv_views(op, plan, params)
    return _matmul_views(op, plan, params)


def _matmul_views(op, plan, params):
    problem, dims = plan.problem, plan.dims
    views = {}
    for tensor, buf in zip((INPUTS, WEIGHTS, OUTPUTS), params):
        shape = _shape(buf)
        strides = _compact_strides(shape)
        rows, cols = strides[-2], 1  # [..., rows, cols], compact
        t = problem.tensor(tensor)
        axis_strides = {}
        for i, axis in enumerate(t.axes):
            (d, _), = axis
            if d in dims.shared:  # batch of a batched matmul: every operand has it
                axis_strides[i] = shape[-1] * shape[-2]
            elif i == len(t.axes) - 1:
                axis_strides[i] = cols
            else:
                axis_strides[i] = rows
        views[tensor] = DramView(buf, axis_strides, _elem_bytes(buf))
    return views, [], [], []


def _elem_bytes(buf) -> int:
    return {"int8": 1, "int32": 4, "float32": 4}[str(buf.dtype)]


def _conv_roles(problem, dims):
    """Per tensor, the role of each axis: batch, group, channel, h, w, kh, kw."""
    (ph, kh, _, _), (pw, kw, _, _) = dims.windows
    names = {dims.reduction: "in_ch", dims.output_channel: "out_ch", kh: "kh", kw: "kw",
             ph: "h", pw: "w"}
    roles = {}
    for t in problem.tensors:
        r = []
        for axis in t.axes:
            terms = dict(axis)
            if len(terms) == 2:
                r.append("h" if ph in terms else "w")
            else:
                (d,) = terms
                r.append(names.get(d, "group" if d in dims.shared else "batch"))
        roles[t.name] = r
    return roles


def _conv_views(op, plan, params):
    from tvm import tirx

    problem, dims = plan.problem, plan.dims
    if len(dims.windows) != 2:
        raise UnsupportedMapping("conv2d without a 2-D window")
    data, weight, out = params
    roles = _conv_roles(problem, dims)
    size, real = problem.size, plan.sizes
    (ph, kh, sh, dh), (pw, kw, sw, dw) = dims.windows
    groups = op.groups
    cg, kg = real[dims.reduction], real[dims.output_channel]
    batch = [d for d in dims.pixels if d not in (ph, pw)]
    n = math.prod(real[d] for d in batch)
    hb = (size[ph] - 1) * sh + (size[kh] - 1) * dh + 1
    wb = (size[pw] - 1) * sw + (size[kw] - 1) * dw + 1
    prologue, epilogue, allocs = [], [], []
    layout, klayout = op.layout, op.kernel_layout
    pad_top, pad_left = op.padding[0], op.padding[1]

    # inputs: NHWC, zero-padded to the bounding box of the whole layer
    if layout == "NHWC" and not any(op.padding):
        in_buf = data
    else:
        in_buf = tirx.decl_buffer((n, hb, wb, cg * groups), str(data.dtype), name="gemmini_input")
        allocs.append(in_buf)
        dshape = dict(zip(layout, _shape(data)))

        def load(nn, h, w, c):
            hh, ww = h - pad_top, w - pad_left
            idx = dict(zip("NHWC", (nn, hh, ww, c)))
            inside = tirx.all(hh >= 0, hh < dshape["H"], ww >= 0, ww < dshape["W"])
            return tirx.if_then_else(inside, tirx.BufferLoad(data, [idx[a] for a in layout]),
                                     tirx.const(0, str(data.dtype)))

        prologue.append(_copy_nest(in_buf, load))
    # weights: HWIO
    if klayout == "HWIO":
        w_buf = weight
    else:
        w_buf = tirx.decl_buffer((size[kh], size[kw], cg, kg * groups), str(weight.dtype),
                                 name="gemmini_weight")
        allocs.append(w_buf)
        prologue.append(_copy_nest(w_buf, lambda h, w, i, o: tirx.BufferLoad(
            weight, [dict(zip("HWIO", (h, w, i, o)))[a] for a in klayout])))
    # outputs: NHWC (staged and copied back when the layer is NCHW)
    if layout == "NHWC":
        o_buf = out
    else:
        o_buf = tirx.decl_buffer((n, real[ph], real[pw], kg * groups), str(out.dtype),
                                 name="gemmini_output")
        allocs.append(o_buf)
        # Touch it before the program: TVM's storage rewrite would otherwise let it reuse the
        # memory of the input staging buffer (lifetimes apart) and their typed pointers clash.
        prologue.append(tirx.BufferStore(o_buf, tirx.const(0, str(out.dtype)), [0, 0, 0, 0]))
        epilogue.append(_copy_nest(out, lambda *i: tirx.BufferLoad(
            o_buf, [dict(zip(layout, i))[a] for a in "NHWC"]), shape_of=_shape(out)))

    def view(tensor, buf, role_dims):
        strides = _compact_strides(_shape(buf))
        by_role = dict(zip(role_dims, strides))
        per_group = {INPUTS: cg, WEIGHTS: kg, OUTPUTS: kg}[tensor]
        ch = {INPUTS: "in_ch", WEIGHTS: "out_ch", OUTPUTS: "out_ch"}[tensor]
        axis_strides = {}
        for i, role in enumerate(roles[tensor]):
            axis_strides[i] = by_role[ch] * per_group if role == "group" else by_role[role]
        return DramView(buf, axis_strides, _elem_bytes(buf))

    if len(batch) > 1:
        raise UnsupportedMapping(f"several batch dimensions {batch}")
    views = {INPUTS: view(INPUTS, in_buf, ("batch", "h", "w", "in_ch")),
             WEIGHTS: view(WEIGHTS, w_buf, ("kh", "kw", "in_ch", "out_ch")),
             OUTPUTS: view(OUTPUTS, o_buf, ("batch", "h", "w", "out_ch"))}
    return views, prologue, epilogue, allocs


def _copy_nest(dst, value_fn, shape_of=None):
    """for every index of `dst` (or of shape_of): dst[index] = value_fn(*index)."""
    from tvm import tirx

    shape = shape_of or _shape(dst)
    ivars = [tirx.Var(f"i{k}", "int32") for k in range(len(shape))]
    stmt = tirx.BufferStore(dst, value_fn(*ivars), ivars)
    for v, extent in reversed(list(zip(ivars, shape))):
        stmt = tirx.For(v, 0, extent, tirx.ForKind.SERIAL, stmt)
    return stmt


# ---- the program -------------------------------------------------------------------------------
class _Emitter:
    def __init__(self, plan: Plan, views: dict, config: GemminiConfig):
        from tvm import sym, tirx

        self.tirx = tirx
        self.plan, self.views, self.config = plan, views, config
        self.analyzer = sym.Analyzer()
        self.dim = config.dim
        self.vars = [tirx.Var(f"{lp.dim.lower()}{lp.level}_{lp.index}", "int32")
                     for lp in plan.loops]
        self.reg_vars = [tirx.Var(f"{lp.dim.lower()}_row{lp.index}", "int32")
                         for lp in plan.reg_loops]
        self.block = tirx.Var("row_block", "int32")  # DIM-row blocks of the streaming loop
        # the register loops that stay loops (the streamed ones become the row blocks)
        self.reg_outer = [lp for lp in plan.reg_loops if lp.index not in plan.stream_reg]
        self.requant = None  # a requant.Requant: int8 outputs scaled by mvout (see lower)

    # -- small helpers --
    def const(self, value):
        return self.tirx.const(int(value), "int32")

    def simplify(self, expr):
        return self.analyzer.simplify(expr) if not isinstance(expr, int) else self.const(expr)

    def call(self, name, *args):
        return isa.call(name, *args)  # gemmini.h commands as intrinsics: see isa.py

    def config_ld(self, stride_bytes, mvin_id):
        """The DRAM row stride of mvin (id 0), mvin2 (1) or mvin3 (2), unscaled, not shrunk."""
        return isa.call("gemmini_extended3_config_ld", stride_bytes, isa.MVIN_SCALE_IDENTITY, 0,
                        mvin_id)

    def seq(self, stmts):
        stmts = [s for s in stmts if s is not None]
        if not stmts:
            return None
        return stmts[0] if len(stmts) == 1 else self.tirx.SeqStmt(stmts)

    def loop(self, var, extent, body):
        if body is None:
            return None
        return self.tirx.For(var, 0, extent, self.tirx.ForKind.SERIAL, body)

    def all_zero(self, variables):
        conds = [v == 0 for v in variables]
        if not conds:
            return self.tirx.const(True, "bool")
        return self.tirx.all(*conds) if len(conds) > 1 else conds[0]

    # -- indices --
    def index(self, d, start=0, stop=None, registers=True):
        """Index of dimension d contributed by host loops[start:stop] (and the register loops).
        Loops merged into the stream contribute through the row block instead."""
        plan, total = self.plan, 0
        stream = d == plan.stream_dim
        for lp in plan.loops[start:stop]:
            if lp.dim == d and lp.index not in plan.stream_host:
                total = total + self.vars[lp.index] * lp.stride
        if registers:
            for lp in plan.reg_loops:
                if lp.dim == d and lp.index not in plan.stream_reg:
                    total = total + self.reg_vars[lp.index] * lp.stride
            if stream:
                total = total + self.block * self.dim
        return total

    def axis_coord(self, tensor, axis, dim_values):
        terms = self.plan.problem.tensor(tensor).axes[axis]
        return sum((coef * dim_values[d] for d, coef in terms), 0)

    def dram_ptr(self, tensor, coords, mask):
        view = self.views[tensor]
        offset = sum((coords[a] * view.strides[a] for a in coords), 0)
        offset = self.simplify(offset)
        return view.buffer.access_ptr(mask, offset=offset)

    def clip(self, d, width, start):
        """Columns / rows of dimension d from `start` that are real (the layer may be padded)."""
        if d not in self.plan.padded:
            return self.const(width)
        return self.simplify(self.tirx.min(self.const(width), self.plan.sizes[d] - start))

    # -- tile moves --
    def tile_moves(self, tensor, make_call):
        """One command per (chunk, row axes, DIM rows of the streaming axis) of a tile."""
        tirx, plan = self.tirx, self.plan
        lay = plan.tiles[tensor]
        t = plan.problem.tensor(tensor)
        origin = {d: self.index(d, 0, lay.fill, registers=False) for d in plan.problem.dims}
        chunk = tirx.Var(f"{tensor[0].lower()}_chunk", "int32")
        avars = {a: tirx.Var(f"{tensor[0].lower()}_ax{a}", "int32") for a in lay.axes[:-1]}
        jb = tirx.Var(f"{tensor[0].lower()}_rows", "int32")
        stream = lay.streaming_axis
        s_ext = lay.axis_extents[stream]
        col_axis = next(i for i in range(len(t.axes)) if i not in lay.axes)
        coords = {a: self.axis_coord(tensor, a, origin) for a in range(len(t.axes))}
        coords[col_axis] = coords[col_axis] + chunk * lay.width
        for a, v in avars.items():
            coords[a] = coords[a] + v
        coords[stream] = coords[stream] + jb * self.dim
        row = lay.base + chunk * lay.rows_per_chunk + jb * self.dim + sum(
            (v * lay.row_strides[a] for a, v in avars.items()), 0)
        cols = self.clip(lay.col_dim, lay.width, origin[lay.col_dim] + chunk * lay.width)
        rows = self.simplify(tirx.min(self.const(self.dim), s_ext - jb * self.dim))
        stream_terms = dict(t.axes[stream])
        if len(stream_terms) == 1 and next(iter(stream_terms)) in plan.padded:
            (sd,) = stream_terms  # weights rows run along the (padded) reduction
            real = self.clip(sd, self.dim, origin[sd] + jb * self.dim)
            rows = self.simplify(tirx.min(rows, real))
        stmt = make_call(self.dram_ptr, coords, self.simplify(row), cols, rows)
        if plan.padded:
            stmt = tirx.IfThenElse(tirx.all(cols > 0, rows > 0), stmt, None)
        stmt = self.loop(jb, math.ceil(s_ext / self.dim), stmt)
        for a in reversed(lay.axes[:-1]):
            stmt = self.loop(avars[a], lay.axis_extents[a], stmt)
        return self.loop(chunk, lay.chunks, stmt)

    def mvin(self, tensor, command):
        def make(ptr, coords, row, cols, rows):
            return self.call(command, ptr(tensor, coords, "r"), row, cols, rows)
        return self.tile_moves(tensor, make)

    def acc_moves(self, command, flags):
        def make(ptr, coords, row, cols, rows):
            mask = "w" if command.endswith("mvout") else "r"
            return self.call(command, ptr(OUTPUTS, coords, mask), row + ACC_BIT + flags, cols,
                             rows)
        return self.tile_moves(OUTPUTS, make)

    # -- compute --
    def tile_row(self, tensor):
        """Row of the tile of `tensor` holding the command's first element."""
        lay = self.plan.tiles[tensor]
        rel = {d: self.index(d, lay.fill) for d in self.plan.problem.dims}
        chunk = rel[lay.col_dim] // lay.width
        row = lay.base + chunk * lay.rows_per_chunk
        for a in lay.axes:
            row = row + self.axis_coord(tensor, a, rel) * lay.row_strides[a]
        return self.simplify(row)

    def compute(self):
        tirx, plan = self.tirx, self.plan
        dims = plan.dims
        point = {d: self.index(d) for d in plan.problem.dims}
        a_row, b_row, c_row = (self.tile_row(t) for t in (INPUTS, WEIGHTS, OUTPUTS))
        k_cols = self.clip(dims.output_channel, plan.fy, point[dims.output_channel])
        c_cols = self.clip(dims.reduction, plan.fx, point[dims.reduction])
        n_blocks = math.ceil(plan.stream_extent() / self.dim)
        rows = self.simplify(tirx.min(self.const(self.dim),
                                      plan.stream_extent() - self.block * self.dim))
        inner_w = [self.vars[lp.index] for lp in plan.loops[plan.preload_fill:]
                   if lp.index not in plan.stream_host]
        first_w = self.simplify(self.all_zero(
            inner_w + [self.reg_vars[lp.index] for lp in self.reg_outer] + [self.block]))
        f_out = plan.tiles[OUTPUTS].fill
        red = plan.reductions()
        outer_red = [self.vars[lp.index] for lp in plan.loops[:f_out] if lp.dim in red]
        inner_red = [self.vars[lp.index] for lp in plan.loops[f_out:] if lp.dim in red]
        overwrite = self.simplify(self.all_zero(outer_red + inner_red))
        if self.requant is not None and self.requant.bias:  # the tile starts from the bias
            overwrite = tirx.const(False, "bool")
        c_addr = self.simplify(c_row + ACC_BIT + tirx.Select(overwrite, self.const(0),
                                                              self.const(ACCUMULATE_BIT)))
        bd = self.simplify(tirx.Select(first_w, b_row, self.const(GARBAGE)))
        preload = self.call("gemmini_extended_preload", bd, c_addr, k_cols, c_cols, k_cols, rows)
        args = (a_row, GARBAGE, c_cols, rows, self.dim, self.dim)
        pre = self.call("gemmini_extended_compute_preloaded", *args)
        acc = self.call("gemmini_extended_compute_accumulated", *args)
        if isinstance(first_w, tirx.IntImm):
            command = pre if first_w.value else acc
        else:
            command = tirx.IfThenElse(first_w, pre, acc)
        stmt = self.seq([preload, command])
        if plan.padded:
            stmt = tirx.IfThenElse(tirx.all(k_cols > 0, c_cols > 0), stmt, None)
        stmt = self.loop(self.block, n_blocks, stmt)
        for lp in reversed(self.reg_outer):
            stmt = self.loop(self.reg_vars[lp.index], lp.extent, stmt)
        return stmt

    # -- the loop nest --
    def nest(self, pos):
        tirx, plan = self.tirx, self.plan
        pre, post = [], []
        for tensor, command in ((INPUTS, "gemmini_extended_mvin"),
                                (WEIGHTS, "gemmini_extended_mvin2")):
            if plan.tiles[tensor].fill == pos:
                pre.append(self.mvin(tensor, command))
        if plan.tiles[OUTPUTS].fill == pos and self.requant is not None:
            # whole sums in the accumulator (requant.check_requant): start from the bias, leave
            # scaled to int8 (config_st's scale and activation)
            if self.requant.bias:
                pre.append(self.tile_moves(OUTPUTS, lambda ptr, coords, row, cols, rows: self.call(
                    "gemmini_extended_mvin3", ptr(BIAS, coords, "r"), row + ACC_BIT, cols, rows)))
            post.append(self.acc_moves("gemmini_extended_mvout", 0))
        elif plan.tiles[OUTPUTS].fill == pos:
            red = plan.reductions()
            outer_red = [self.vars[lp.index] for lp in plan.loops[:pos] if lp.dim in red]
            if outer_red:  # partial sums come back from DRAM after the first reduction step
                reload = self.seq([self.call("gemmini_fence"),
                                   self.acc_moves("gemmini_extended_mvin3", 0)])
                pre.append(tirx.IfThenElse(tirx.Not(self.all_zero(outer_red)), reload, None))
            post.append(self.acc_moves("gemmini_extended_mvout", FULL_BIT))
        if pos < len(plan.loops):
            lp = plan.loops[pos]
            inner = self.nest(pos + 1)
            if pos not in plan.stream_host:  # a merged loop runs as part of the row blocks
                inner = self.loop(self.vars[pos], lp.extent, inner)
        else:
            inner = self.compute()
        return self.seq(pre + [inner] + post)

    def configs(self) -> list:
        """config_ex, the three mvin strides and the mvout stride: DRAM rows along each tile's
        streaming axis."""
        plan = self.plan
        views = self.views
        out_axis = plan.tiles[OUTPUTS].streaming_axis
        in_axis = plan.tiles[INPUTS].streaming_axis
        w_axis = plan.tiles[WEIGHTS].streaming_axis
        out_stride = views[OUTPUTS].strides[out_axis] * views[OUTPUTS].elem_bytes
        store = self.call("gemmini_config_st", out_stride)
        acc_load_stride = views[OUTPUTS].strides[out_axis] * views[OUTPUTS].elem_bytes
        if self.requant is not None:  # bias rows repeat (stride 0); mvout scales to int8
            acc_load_stride = 0
            store = self.call("gemmini_extended_config_st", out_stride,
                              RELU if self.requant.relu else NO_ACTIVATION,
                              isa.exact_float32(self.requant.scale))
        return [
            self.call("gemmini_extended_config_ex", DATAFLOW_CODE[plan.dataflow], 0, 0,
                      plan.a_stride(), 0, 0),
            self.config_ld(views[INPUTS].strides[in_axis] * views[INPUTS].elem_bytes, 0),
            self.config_ld(views[WEIGHTS].strides[w_axis] * views[WEIGHTS].elem_bytes, 1),
            self.config_ld(acc_load_stride, 2),
            store,
        ]

    def program(self, op_id, op) -> list:
        setup = [self.call("gemmini_begin_op", op_id), self.call("gemmini_flush", 0),
                 *self.configs()]
        tail = [self.call("gemmini_fence"), self.call("gemmini_end_op")]
        from tvm.ir import StringImm

        check = self.tirx.AssertStmt(
            self.tirx.call_extern("int32", "gemmini_status") == 0, StringImm("RuntimeError"),
            [StringImm(f"Gemmini functional model: error in {op.kind} {op.name} "
                       f"(#{op.index}); gemmini_error_message() has the reason")])
        return setup + [self.nest(0)] + tail + [check]
