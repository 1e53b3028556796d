"""The built-in cost model: a Mapping of a Problem on an Architecture, counted as Timeloop 019f107.

Per storage level and kept tensor (counts per instance, as Timeloop prints them):

* utilized capacity: the tile (bounding box, input halo included) over the loops of this level
  and below; utilized instances: the product of the spatial factors above the level;
* fills: words received from the parent over the run (`nest.fills`), first fill included; for
  Outputs that is also the "cold fill" of every word before its first partial sum (019f107
  counts it, the parent counts no read for it);
* reads (read-only tensors) or updates (Outputs): what the children below draw from / write to
  this level: the children's fills times the number of distinct child tiles per spatial block
  between them (multicast and spatial reduction count once); MACs draw one operand per compute;
* Outputs reads = updates - partition size (the first write of each word needs no read);
  partition size: the data one instance ever holds, scaled down at each spatial fan-out by
  tile / fan-out tile, rounded down, as Timeloop does;
* energy: ceil(accesses / block size) vector accesses per action, times the per-access energy,
  spread over the utilized instances of a cluster;
* cycles: compute cycles = product of the temporal factors; a level with a read or write
  bandwidth needs ceil(compute / slowdown) cycles with slowdown = min(bandwidth / demand);
  total = the maximum; utilization = MACs / (MAC instances x cycles).

Invalid mappings come back as `Evaluation(valid=False)` with Timeloop's own error text.
Uneven mappings (`Mapping.tile_levels`, CoSA's Z): each tensor's tiles follow their own boundary
(`uneven.py`); Timeloop has no such mapping, so there it is this model's own extension.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from ..errors import InputError
from ..problem import Problem
from . import energy as _energy
from . import uneven as _uneven
from .nest import (Nest, TensorShape, distinct_children, fanout_accesses, fills,
                   mac_operand_accesses)
from .result import Evaluation, LevelStats, TensorStats


class _Level:
    __slots__ = ("name", "entries", "instances", "mesh_x", "mesh_y", "fanout", "block",
                 "clusters", "read_bw", "write_bw", "e_read", "e_write")


class _Context:
    """Everything about a (problem, architecture) pair that does not depend on the mapping."""

    def __init__(self, problem: Problem, arch):
        self.problem, self.arch = problem, arch
        self.dims = problem.dims
        self.dim_index = {d: i for i, d in enumerate(self.dims)}
        self.sizes = tuple(n for _, n in problem.sizes)
        self.tensor_names = problem.tensor_names
        self.shapes = tuple(
            TensorShape(tuple(tuple((self.dim_index[d], c) for d, c in axis) for axis in t.axes))
            for t in problem.tensors)
        self.is_output = tuple(t.is_output for t in problem.tensors)
        self.levels = []
        estimated = False
        for i, lv in enumerate(arch.levels):
            L = _Level()
            L.name = lv.name
            L.entries = None if lv.is_dram else lv.entries
            L.instances = lv.instances
            L.mesh_x, L.mesh_y = lv.mesh
            L.fanout = arch.fanout(i)
            L.block = lv.block_size
            L.clusters = max(1, lv.instances // lv.cluster_size)
            L.read_bw, L.write_bw = lv.read_bandwidth, lv.write_bandwidth
            L.e_read, L.e_write, est = _energy.level_energies(lv)
            estimated |= est
            self.levels.append(L)
        self.nlev = len(self.levels)
        self.default_keeps = tuple(lv.keeps for lv in arch.levels)
        self.kept_cache = {}
        ar = arch.arithmetic
        self.mac_name = ar.name
        self.mac_instances = ar.instances
        self.mac_mesh = ar.mesh
        self.mac_energy, est = _energy.arithmetic_energy(ar)
        self.energy_estimated = estimated or est


_CONTEXTS: "OrderedDict[tuple, tuple]" = OrderedDict()


def _context(problem, arch) -> _Context:
    """Cached per (problem, arch) object pair: both are frozen, so identity is enough."""
    key = (id(problem), id(arch))
    hit = _CONTEXTS.get(key)
    if hit is not None and hit[0] is problem and hit[1] is arch:
        return hit[2]
    ctx = _Context(problem, arch)
    _CONTEXTS[key] = (problem, arch, ctx)
    if len(_CONTEXTS) > 64:
        _CONTEXTS.popitem(last=False)
    return ctx


def evaluate(mapping, problem: Problem, arch) -> Evaluation:
    """Cycles, energy and per-level access counts of `mapping`, as Timeloop 019f107 counts them."""
    ctx = _context(problem, arch)
    if len(mapping.levels) != ctx.nlev:
        raise InputError(f"mapping has {len(mapping.levels)} levels, architecture {arch.name} "
                         f"has {ctx.nlev} ({list(arch.level_names)})")
    loops = _loops(ctx, mapping)
    error = _factor_error(ctx, loops)
    if error:
        return _invalid(ctx, error)
    nest = Nest(len(ctx.dims), loops)
    kept = _kept(ctx, mapping)
    ext = nest.ext
    uneven = None  # per tensor: its own tile extents and refilling loops (`uneven.py`)
    if mapping.tile_levels and any(i != j for (_, i), j in mapping.tile_levels.items()):
        error = _uneven.uneven_error(ctx, mapping)
        if error:
            return _invalid(ctx, error)
        uneven = _uneven.tile_loops(ctx, mapping, nest, kept)
        tiles = [{i: shape.size(tl.ext[i]) for i in levels}
                 for shape, levels, tl in zip(ctx.shapes, kept, uneven)]
    else:
        tiles = [{i: shape.size(ext[i]) for i in levels} for shape, levels in zip(ctx.shapes, kept)]
    error = _capacity_error(ctx, tiles)
    if error:
        return _invalid(ctx, error)
    used = [1] * ctx.nlev
    macs = _instance_error(ctx, loops, used)
    if macs.__class__ is str:
        return _invalid(ctx, macs)
    return _count(ctx, mapping, nest, kept, tiles, used, macs, uneven)


def _kept(ctx, mapping):
    """Per tensor: the levels that keep it (the mapping's bypass, else the architecture's).
    Cached per context on the tuple of keep sets (mappings of one search share them)."""
    key = tuple(lv.keeps if lv.keeps is None or lv.keeps.__class__ is frozenset
                else frozenset(lv.keeps) for lv in mapping.levels)
    hit = ctx.kept_cache.get(key)
    if hit is not None:
        return hit
    kept = [[] for _ in ctx.tensor_names]
    for i, (keeps, default) in enumerate(zip(key, ctx.default_keeps)):
        keeps = keeps if keeps is not None else default
        for ti, name in enumerate(ctx.tensor_names):
            if name in keeps:
                kept[ti].append(i)
    for name, levels in zip(ctx.tensor_names, kept):
        if not levels:
            raise InputError(f"tensor {name} is kept at no level; the outermost level "
                             f"({ctx.levels[-1].name}) must keep it")
    kept = tuple(tuple(levels) for levels in kept)
    if len(ctx.kept_cache) > 256:
        ctx.kept_cache.clear()
    ctx.kept_cache[key] = kept
    return kept


# ---- the mapping as loops -----------------------------------------------------------------
def _loops(ctx, mapping):
    """Per level: (temporal ((dim, n), ...) innermost first, spatial ((dim, n), ...) X then Y,
    number of X loops). Dimensions are indices; factors of 1 are dropped."""
    di = ctx.dim_index
    out = []
    for i, lv in enumerate(mapping.levels):
        temporal = lv.temporal
        nt = 0
        for d, f in temporal.items():
            if d not in di or f.__class__ is not int or f < 1:
                _bad_factor(ctx, i, d, f)
            if f > 1:
                nt += 1
        t = ()
        if nt:
            t = [(di[d], temporal[d]) for d in lv.order if temporal.get(d, 1) > 1]
            if len(t) < nt:  # dimensions missing from `order` follow in problem order
                listed = set(lv.order)
                t += [(di[d], temporal[d]) for d in ctx.dims
                      if d not in listed and temporal.get(d, 1) > 1]
            t = tuple(t)
        s = []
        for factors in (lv.spatial_x, lv.spatial_y):
            for d, f in factors.items():
                if d not in di or f.__class__ is not int or f < 1:
                    _bad_factor(ctx, i, d, f)
                if f > 1:
                    s.append((di[d], f))
            if factors is lv.spatial_x:
                nx = len(s)
        out.append((t, tuple(s), nx))
    return out


def _bad_factor(ctx, i, d, f):
    where = f"level {ctx.levels[i].name}"
    if d not in ctx.dim_index:
        raise InputError(f"{where}: dimension {d!r} is not in {ctx.problem.name} "
                         f"({list(ctx.dims)})")
    raise InputError(f"{where}: factor {f!r} of {d} is not a positive integer")


def _factor_error(ctx, loops):
    product = [1] * len(ctx.dims)
    for t, s, _ in loops:
        for d, f in t:
            product[d] *= f
        for d, f in s:
            product[d] *= f
    for d, (got, size) in enumerate(zip(product, ctx.sizes)):
        if got != size:
            return (f"parsing mapping: product of all factors of dimension {ctx.dims[d]} is "
                    f"{got}, which is not equal to the dimension size of the workload {size}.")
    for i, L in enumerate(ctx.levels):
        # Timeloop's map format has no spatial entry for such a level (a parse error there).
        if loops[i][1] and L.fanout == (1, 1):
            spatial = {ctx.dims[d]: f for d, f in loops[i][1]}
            return (f"parsing mapping: spatial factors {spatial} at level {L.name}, which feeds "
                    "as many instances as it has (no fan-out below it)")
        spatial_dims = [d for d, _ in loops[i][1]]
        for d in set(spatial_dims):
            if spatial_dims.count(d) > 1:  # on X and on Y: no Timeloop map says that
                return (f"parsing mapping: dimension {ctx.dims[d]} is split on both X and Y at "
                        f"level {L.name}; a Timeloop map gives each dimension one spatial "
                        "factor")
    return None


def _capacity_error(ctx, tiles):
    for i, L in enumerate(ctx.levels):
        if L.entries is None:
            continue
        used = sum(t[i] for t in tiles if i in t)
        if used > L.entries:
            return (f"couldn't map level {L.name}: mapped tile size {used} exceeds buffer "
                    f"capacity {L.entries}")
    return None


def _instance_error(ctx, loops, used):
    """Timeloop 019f107 checks cumulative instance counts only (not each link's fan-out):
    the MACs first, then every storage level (the innermost failing one is reported).

    Fills `used[i]` with the instances of level i in use (the spatial factors above it) and
    returns the MACs in use, or the error text."""
    x = y = 1
    bad = None
    for i in range(ctx.nlev - 1, -1, -1):
        L = ctx.levels[i]
        if x * y > L.instances or x > L.mesh_x or y > L.mesh_y:
            bad = (L, x, y)  # going inwards: the last one found is the innermost
        used[i] = x * y
        _, s, nx = loops[i]
        for k, (_, f) in enumerate(s):
            if k < nx:
                x *= f
            else:
                y *= f
    mx, my = ctx.mac_mesh
    name = ctx.mac_name
    if x * y > ctx.mac_instances:
        return (f"couldn't map level {name}: mapped max Arithmetic instances {x * y} exceeds "
                f"hardware instances {ctx.mac_instances}")
    if x > mx:
        return (f"couldn't map level {name}: mapped max Arithmetic X expansion {x} exceeds "
                f"hardware instances {mx}")
    if y > my:
        return (f"couldn't map level {name}: mapped max Arithmetic Y expansion {y} exceeds "
                f"hardware instances {my}")
    if bad is not None:
        return _storage_instance_error(*bad)
    return x * y


def _storage_instance_error(L, x, y):
    for what, used, have in (("instances", x * y, L.instances), ("X expansion", x, L.mesh_x),
                             ("Y expansion", y, L.mesh_y)):
        if used > have:
            return (f"couldn't map level {L.name}: mapped {what} {used} exceeds available "
                    f"hardware instances {have}")
    return None


def _invalid(ctx, error) -> Evaluation:
    return Evaluation(valid=False, backend="builtin", error=error,
                      energy_estimated=ctx.energy_estimated)


# ---- counting -----------------------------------------------------------------------------
def _count(ctx, mapping, nest, kept, tiles, used, mac_used, uneven=None) -> Evaluation:
    nlev = ctx.nlev
    compute = nest.compute_cycles
    spatial = nest.spatial

    # Per level: (tensor index, reads, fills, updates, partition or None) per kept tensor.
    per_level = [[] for _ in range(nlev)]
    is_output = ctx.is_output
    ext, above = nest.ext, nest.above
    meshes = {}  # fan-out level -> the grid of its children (built when needed)
    mac_mesh = _fanout_mesh(ctx, nest, 0) if spatial[0] else None
    all_loops = nest.temporal[0] + above[0] if nlev > 1 else nest.temporal[0]
    for ti, shape in enumerate(ctx.shapes):
        levels, tile, out = kept[ti], tiles[ti], is_output[ti]
        tile_ext, tile_above = (ext, above) if uneven is None else (uneven[ti].ext,
                                                                    uneven[ti].above)
        # Read-only tensors need partition sizes only for the report (built on demand).
        parts = _partitions(shape, nest, levels[0], nlev) if out else None
        # What the MACs draw: one operand per compute (and per multicast group below level
        # 0); with a fan-out from level 0 to the MACs, Timeloop's link transfers between
        # neighbouring MACs save some of those reads (`mac_operand_accesses`).
        child, child_fills, first_fanout = -1, compute, 0
        if spatial[0]:
            child_fills = mac_operand_accesses(shape, spatial[0], nest.spatial_x_count[0],
                                               mac_mesh, all_loops)
            first_fanout = 1
        top = levels[-1]
        counts = []  # per kept level: [content, fills, peer reads]
        for p in levels:
            # What the children draw: their fills, once per distinct child tile (multicast),
            # less what neighbouring children pass each other over links (Timeloop's link
            # transfers, counted where the fan-out feeds a level that keeps the tensor; the
            # words a child passes on are reads of the children's level).
            content = child_fills
            for j in range(max(child + 1, first_fanout), p + 1):
                if not spatial[j]:
                    continue
                mesh = meshes.get(j)
                if mesh is None:
                    mesh = meshes[j] = _fanout_mesh(ctx, nest, j)
                if j == child + 1:
                    content, linked, _ = fanout_accesses(
                        shape, tile_ext[child], tile[child], tile_above[child], spatial[j],
                        nest.spatial_x_count[j], mesh)
                    # Timeloop spreads the link words over every instance of the children's
                    # level, not over one parent's children: their reads grow by that share,
                    # and their fills are the parent's deliveries per child plus that share.
                    fan = math.prod(n for _, n, _ in spatial[j])
                    counts[-1][2] += linked / used[child]
                    counts[-1][1] += linked / used[child] - linked / fan
                else:
                    # Level j-1 bypasses the tensor: Timeloop scales level j's own reads (as
                    # if j-1 kept it) to what j-1's children drew (`MaskTiles`): by the
                    # ratio of reads to words received over the fan-out.
                    reads, _, received = fanout_accesses(
                        shape, ext[j - 1], shape.size(ext[j - 1]), above[j - 1], spatial[j],
                        nest.spatial_x_count[j], mesh)
                    fan = math.prod(n for _, n, _ in spatial[j])
                    content = content * fan * reads / received
            f = 0 if p == top else fills(shape, tile_ext[p], tile[p], tile_above[p])
            counts.append([content, f, 0.0])
            child, child_fills = p, f
        for p, (content, f, peer) in zip(levels, counts):
            f = int(f)  # Timeloop stores fills as an integer (truncated)
            if out:  # updates = content; the first write of each word needs no read
                per_level[p].append((ti, _round(content + peer - parts[p]), f,
                                     _round(content), parts[p]))
            else:
                per_level[p].append((ti, _round(content + peer), f, 0, None))

    rows_per_level = []
    total_energy = 0.0
    cycles = compute
    for i, L in enumerate(ctx.levels):
        rows = per_level[i]
        inst = used[i]
        clusters = inst if inst < L.clusters else L.clusters
        spread = inst / clusters
        slowdown = 1.0
        if L.read_bw is not None or L.write_bw is not None:
            slowdown = _slowdown(L, rows, compute)
            level_cycles = math.ceil(compute / slowdown) if slowdown != 1.0 else compute
            if level_cycles > cycles:
                cycles = level_cycles
        else:
            level_cycles = compute
        B, e_read, e_write = L.block, L.e_read, L.e_write
        energies = []
        for _, r, f, u, _ in rows:
            if B == 1:
                e_inst = (r * e_read + (f + u) * e_write) / spread
            else:
                e_inst = ((-(-r // B)) * e_read + ((-(-f // B)) + (-(-u // B))) * e_write) / spread
            total_energy += e_inst * inst
            energies.append(e_inst)
        rows_per_level.append((level_cycles, slowdown, inst, clusters, rows, energies))

    computes = ctx.problem.macs
    mac_energy = computes * ctx.mac_energy
    total_energy += mac_energy
    arithmetic = {"name": ctx.mac_name, "word_bits": ctx.arch.arithmetic.word_bits,
                  "instances": ctx.mac_instances, "compute_energy_pJ": ctx.mac_energy,
                  "utilized_instances": mac_used, "computes": computes, "cycles": compute,
                  "energy_pJ": mac_energy}
    result = Evaluation(valid=True, backend="builtin", cycles=cycles, energy_pJ=total_energy,
                        utilization=computes / (ctx.mac_instances * cycles), computes=computes,
                        energy_estimated=ctx.energy_estimated, arithmetic=arithmetic)
    result._build_levels = lambda: _level_stats(ctx, nest, kept, tiles, rows_per_level, compute)
    result._presentation = lambda ev: _present(ev, ctx, mapping, nest, kept, uneven)
    return result


def _round(x) -> int:
    """C's std::round (halves away from zero), which Timeloop applies to reads and updates."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def _fanout_mesh(ctx, nest, j) -> tuple:
    """The grid Timeloop lays the children of one level-j instance on: per axis the larger of
    the physical fan-out and the one the mapping uses."""
    nx = nest.spatial_x_count[j]
    used_x = math.prod(n for _, n, _ in nest.spatial[j][:nx])
    used_y = math.prod(n for _, n, _ in nest.spatial[j][nx:])
    fx, fy = ctx.levels[j].fanout
    return max(fx, used_x), max(fy, used_y)


def _slowdown(L, rows, compute) -> float:
    """Timeloop's bandwidth slowdown: min(1, bandwidth / demand) for reads and for writes
    (fills + updates), per instance, summed over tensors in the order Timeloop sums them."""
    read_demand = write_demand = 0.0
    for _, r, f, u, _ in rows:
        read_demand += r / compute
        write_demand += (u + f) / compute
    slowdown = 1.0
    if L.read_bw is not None and L.read_bw < read_demand:
        slowdown = L.read_bw / read_demand
    if L.write_bw is not None and L.write_bw < write_demand:
        slowdown = min(slowdown, L.write_bw / write_demand)
    return slowdown


def _level_stats(ctx, nest, kept, tiles, rows_per_level, compute) -> list:
    out = []
    names, is_output = ctx.tensor_names, ctx.is_output
    parts = {ti: _partitions(ctx.shapes[ti], nest, kept[ti][0], ctx.nlev)
             for ti in range(len(names)) if not is_output[ti]}
    for i, (cycles, slowdown, inst, clusters, rows, energies) in enumerate(rows_per_level):
        tensors = {}
        for (ti, r, f, u, part), e_inst in zip(rows, energies):
            if part is None:
                part = parts[ti][i]
            accesses = r + f + u
            out_ = is_output[ti]
            tensors[names[ti]] = TensorStats(
                partition_size=part, utilized_capacity=tiles[ti][i], utilized_instances=inst,
                utilized_clusters=clusters, reads=r, updates=u, fills=f,
                temporal_reductions=r if out_ else 0,
                address_generations_per_cluster=(u + f) if out_ else (r + f),
                energy_per_scalar_access_pJ=e_inst / accesses if accesses else 0.0,
                energy_per_instance_pJ=e_inst, energy_total_pJ=e_inst * inst,
                read_bw=slowdown * r / compute, write_bw=slowdown * (u + f) / compute,
                shared_bw=slowdown * accesses / compute)
        out.append(LevelStats(ctx.levels[i].name, i + 1, cycles, slowdown, tensors))
    return out


def _partitions(shape, nest, lowest, nlev) -> list:
    """Timeloop's partition sizes of levels lowest..top: from the whole tensor down, times
    tile / fan-out tile at each fan-out (rounded down at each step)."""
    out = [0] * nlev
    part = out[nlev - 1] = shape.size(nest.ext[nlev - 1])
    spatial, ext, block = nest.spatial, nest.ext, nest.block_ext
    size = shape.size
    for i in range(nlev - 2, lowest - 1, -1):
        if spatial[i + 1]:
            part = part * size(ext[i]) // size(block[i + 1])
        out[i] = part
    return out


# ---- presentation (only when asked for) ---------------------------------------------------
def _present(ev: Evaluation, ctx, mapping, nest, kept, uneven=None):
    for i, lv in enumerate(ev.levels):
        lv.specs = level_specs(ctx.arch.levels[i], ctx.levels[i])
        lv.loop_nest = loop_nest_lines(mapping.levels[i], ctx.dims)
    ev.networks = _networks(ctx, nest, kept, uneven)


def level_specs(level, L=None) -> dict:
    """A level's specs as Timeloop prints them (summary.json `levels[].specs`)."""
    e_read = L.e_read if L is not None else _energy.level_energies(level)[0]
    size = None if level.is_dram else level.entries
    return {"technology": "DRAM" if level.is_dram else "SRAM", "size": size,
            "word_bits": level.word_bits, "block_size": level.block_size,
            "cluster_size": level.cluster_size, "instances": level.instances,
            "shared_bandwidth": level.shared_bandwidth, "read_bandwidth": level.read_bandwidth,
            "write_bandwidth": level.write_bandwidth, "multiple_buffering": 1.0,
            "effective_size": size, "min_utilization": 0.0, "vector_access_energy_pJ": e_read}


def loop_nest_lines(lv, dims) -> list:
    """Timeloop's per-level 'Loop nest': temporal loops outermost first, then spatial ones."""
    loops = [(d, f, "") for d, f in reversed(lv.temporal_loops(dims))]
    spatial = [(d, f, " (Spatial-X)") for d, f in lv.spatial_x.items() if f > 1]
    spatial += [(d, f, " (Spatial-Y)") for d, f in lv.spatial_y.items() if f > 1]
    loops += list(reversed(spatial))
    return [f"{'  ' * k}for {d} in [0:{f}){tag}" for k, (d, f, tag) in enumerate(loops)]


def _networks(ctx, nest, kept, uneven=None) -> list:
    """Per link parent <==> child: fan-out, multicast factor, words delivered, reductions."""
    out = []
    nlev = ctx.nlev
    for j in range(nlev):
        child_name = ctx.levels[j - 1].name if j else ctx.mac_name
        fanout = 1
        for _, n, _ in nest.spatial[j]:
            fanout *= n
        spaces = {}
        for ti, name in enumerate(ctx.tensor_names):
            shape = ctx.shapes[ti]
            below = [i for i in kept[ti] if i < j]
            c = below[-1] if below else -1
            if c < 0:
                words = nest.compute_cycles
            else:
                e, a = ((nest.ext[c], nest.above[c]) if uneven is None
                        else (uneven[ti].ext[c], uneven[ti].above[c]))
                words = fills(shape, e, shape.size(e), a)
            for k in range(c + 1, j + 1):
                if nest.spatial[k]:
                    words *= distinct_children(shape, nest.spatial[k])
            groups = distinct_children(shape, nest.spatial[j]) if nest.spatial[j] else 1
            multicast = fanout // groups
            if ctx.is_output[ti] and ctx.levels[j].entries is None and j in kept[ti]:
                # DRAM cannot reduce in place: the partial sums it reads back cross the link.
                words += words - _partitions(shape, nest, j, nlev)[j]
            spaces[name] = {"fanout": fanout, "multicast_factor": multicast,
                            "ingresses": float(words),
                            "spatial_reductions": words * (multicast - 1)
                            if ctx.is_output[ti] else 0,
                            "avg_hops": _hops(multicast, fanout)}
        out.append({"name": f"{ctx.levels[j].name} <==> {child_name}", "dataspaces": spaces})
    return sorted(out, key=lambda n: n["name"])


def _hops(multicast, fanout) -> float:
    """Timeloop's legacy-network average hop count (entry at the side of a sqrt(n) x sqrt(n)
    mesh); with uneven multicast groups this uses the mean group size."""
    root_f, root_n = math.sqrt(multicast), math.sqrt(fanout)
    return root_n * root_f + 0.5 * (root_n - root_f) - root_n / root_f + 0.5


def lower_bound_cycles(problem: Problem, arch) -> int:
    """max(MACs / MAC count, compulsory outermost-level traffic / its bandwidth).

    Compulsory traffic: every input word the layer uses read once (a strided 1x1 convolution
    skips input rows, so this can be less than the tensor's bounding box), every output written
    once, at the outermost level's read and write bandwidths per instance, as Timeloop applies
    them. No schedule can take fewer cycles in Timeloop's model.
    """
    compute = math.ceil(problem.macs / arch.num_macs)
    top = arch.levels[-1]
    reads = sum(used_words(problem, t) for t in problem.tensors if not t.is_output)
    writes = sum(used_words(problem, t) for t in problem.tensors if t.is_output)
    bound = compute
    if top.read_bandwidth:
        bound = max(bound, math.ceil(reads / top.read_bandwidth))
    if top.write_bandwidth:
        bound = max(bound, math.ceil(writes / top.write_bandwidth))
    return bound


def used_words(problem: Problem, tensor) -> int:
    """Words of `tensor` the layer touches (per axis: the distinct values of its index sum)."""
    size = problem.size
    words = 1
    for axis in tensor.axes:
        values = {0}
        for d, c in axis:
            values = {v + c * x for v in values for x in range(size[d])}
        words *= len(values)
    return words
