"""Access counting the way Timeloop 019f107's nest analysis does it, in closed form.

Timeloop walks the loop nest and, at every storage level, records the *delta* between the tile
it holds now and the tile it held at the previous step (axis-aligned boxes per tensor). It does
not walk every iteration: each temporal loop runs iteration 0, then iteration 1 standing for the
remaining n-1 iterations, so the visited index vectors are all 0/1 vectors in counting order,
weighted by the product of (n-1) over their ones. Consequences reproduced here:

* a transition at loop j (j: 0 -> 1, every inner loop: 1 -> 0) moves the tile by +stride_j on
  j's dimension and by -stride_k (one step, not n_k-1 steps) on each inner loop's dimension, and
  happens (n_j - 1) * prod(n_outer) times in total;
* the words a move costs are the new box minus the old one (exact set difference of the
  axis-aligned boxes: partial overlaps on one or several axes reuse the halo);
* Timeloop's reset-on-stride-change rule (019f107 `SaveAndSubtractIfSameStride`, on for
  cnn-layer shapes): a tile remembers the translation of its last move; a move by a different
  translation (a move that left the tile in place counts as translation zero) discards the old
  box and fetches the whole new one, and the next move starts afresh (see `_walk`);
* spatial children whose tiles have the same position (the tensor does not depend on the
  spatial dimension) receive the same data: the parent reads it once (multicast).

A tensor whose every axis is a single dimension (weights, outputs) can never overlap partially,
so its count is the classic tile x product of the loops from the innermost relevant one out.
"""

from __future__ import annotations

import itertools


class Nest:
    """Loop structure of one mapping, innermost level first, as plain ints and tuples.

    `temporal[i]`: ((dim, n, stride), ...) of level i's loops with n > 1, innermost first.
    `spatial[i]`: ((dim, n, stride), ...) of level i's spatial loops (the fan-out below it).
    `ext[i][d]`: extent of dimension d over the loops of levels 0..i (the tile of level i);
    `block_ext[i]`: over levels 0..i-1 plus level i's spatial loops (what one fan-out covers).
    `above[i]`: the temporal loops of levels i+1.. (innermost first).
    """

    __slots__ = ("temporal", "spatial", "spatial_x_count", "ext", "block_ext", "above",
                 "compute_cycles")

    def __init__(self, ndims, levels):
        """`levels[i]` = (temporal ((dim, n), ...) innermost first, spatial ((dim, n), ...))."""
        cur = [1] * ndims
        temporal, spatial, ext, block_ext = [], [], [], []
        compute = 1
        for level in levels:
            sp = []
            for d, n in level[1]:
                sp.append((d, n, cur[d]))
                cur[d] *= n
            block_ext.append(tuple(cur))
            tl = []
            for d, n in level[0]:
                tl.append((d, n, cur[d]))
                cur[d] *= n
                compute *= n
            temporal.append(tuple(tl))
            spatial.append(tuple(sp))
            ext.append(tuple(cur))
        above = [()] * len(levels)
        for i in range(len(levels) - 2, -1, -1):
            above[i] = temporal[i + 1] + above[i + 1]
        self.temporal, self.spatial = tuple(temporal), tuple(spatial)
        self.ext, self.block_ext, self.above = tuple(ext), tuple(block_ext), tuple(above)
        self.compute_cycles = compute
        # How many of each level's spatial loops are on X (they come first in `spatial`).
        self.spatial_x_count = tuple(level[2] if len(level) > 2 else len(level[1])
                                     for level in levels)


class TensorShape:
    """A tensor's axes as dimension indices, with what the counting needs precomputed."""

    __slots__ = ("axes", "simple", "relevant", "dim_axes", "size")

    def __init__(self, axes):
        self.axes = axes  # ((dim, coef), ...) per axis
        self.simple = all(len(axis) == 1 for axis in axes)
        dim_axes = {}
        for a, axis in enumerate(axes):
            for d, c in axis:
                if c:
                    dim_axes.setdefault(d, []).append((a, c))
        self.dim_axes = {d: tuple(v) for d, v in dim_axes.items()}
        self.relevant = frozenset(self.dim_axes)
        self.size = _size_function(axes)

    def extents(self, ext):
        """Bounding box of a tile with per-dimension extents `ext` along each axis."""
        return tuple(sum(c * (ext[d] - 1) for d, c in axis) + 1 for axis in self.axes)


def _size_function(axes):
    """`size(ext)`: words in the bounding box, as straight-line code (it runs very often)."""
    factors = []
    for axis in axes:
        if len(axis) == 1 and axis[0][1] == 1:
            factors.append(f"e[{int(axis[0][0])}]")
        else:
            terms = "+".join(f"{int(c)}*(e[{int(d)}]-1)" for d, c in axis)
            factors.append(f"({terms or '0'}+1)")
    return eval("lambda e: " + ("*".join(factors) or "1"))  # ints only: safe


def fills(shape: TensorShape, tile_ext, full: int, loops) -> int:
    """Words one instance receives over the run (first fill included).

    `tile_ext`: per-dimension extents of the tile, `full` its size, `loops`: the temporal loops
    above it, innermost first, ((dim, n, stride), ...).
    """
    relevant = shape.relevant
    if shape.simple:
        product = 0
        for d, n, _ in loops:
            if product:
                product *= n
            elif d in relevant:
                product = n
        return full * (product or 1)
    if not any(d in relevant for d, _, _ in loops):
        return full
    extents = shape.extents(tile_ext)
    kinds = _transitions(shape, extents, full, loops)
    if all(size == full for _, size in kinds):
        # Every transition moves the whole box: no reuse, whatever came before.
        total, weight = 0, 1
        for j in range(len(loops) - 1, -1, -1):
            total += (loops[j][1] - 1) * weight
            weight *= loops[j][1]
        return full * (1 + total)
    return full + _walk(kinds, loops, full)


def _transitions(shape, extents, full, loops):
    """(shift, words) of each loop's transition: the box's shift per axis (the loop one step
    forward, each inner loop one step back) and the words of the new box not in the old one."""
    out = []
    dim_axes = shape.dim_axes
    reset = [0] * len(extents)  # axis shift of the inner loops going back from 1 to 0
    for d, n, stride in loops:
        terms = dim_axes.get(d, ())
        shift = list(reset)
        for a, c in terms:
            shift[a] += c * stride
        if any(shift):
            overlap = 1
            for e, v in zip(extents, shift):
                overlap *= max(0, e - abs(v))
            out.append((tuple(shift), full - overlap))
        else:
            out.append((tuple(shift), 0))
        for a, c in terms:
            reset[a] -= c * stride
    return out


def _walk(kinds, loops, full) -> int:
    """Weighted sum of deltas over Timeloop's 0/1 iteration order, with its reset-on-stride-
    change rule (`OperationSpace::SaveAndSubtractIfSameStride`): a tile keeps the translation
    of its last move (None after its first fill or a reset); a move by that same translation,
    or any move when there is none, costs the set difference of the boxes (nothing when the
    box stays in place) and records the translation; a move by another translation (a zero
    one included) discards the old box: the whole box is fetched and the translation reset.

    block(j, g): total of the loops 0..j-1 run once through, entered with translation state g,
    and the state it leaves. Built bottom-up for every state (there are few):
    block(j+1, g) = block(j, g), then loop j's transition and block(j, .), weighted n_j - 1
    (Timeloop runs iteration 1 once for the n_j - 1 iterations after the first).
    """
    states = [None] + list({shift for shift, _ in kinds})
    table = {g: (0, g) for g in states}
    for (shift, size), (_, n, _) in zip(kinds, loops):
        new = {}
        for g in states:
            t1, g1 = table[g]
            if g1 is None or g1 == shift:
                delta, g2 = size, shift
            else:
                delta, g2 = full, None
            t2, g3 = table[g2]
            new[g] = (t1 + (n - 1) * (delta + t2), g3)
        table = new
    return table[None][0]


_MAC_CACHE: dict = {}


def mac_operand_accesses(shape: TensorShape, spatial, x_loops: int, mesh, loops) -> int:
    """Words level 0 delivers to its MACs over the run when the innermost loop of the nest is
    spatial (a fan-out from level 0 to the MACs), as Timeloop 019f107 counts them.

    Each step of the walk over the temporal loops `loops` (innermost first), every MAC needs
    one word; MACs needing the same word share one read (multicast). With link transfers
    (on by default in Timeloop), a MAC whose word equals the word a mesh neighbour (left,
    right, up or down, not wrapping around) needed at the previous step gets it over the link
    instead; Timeloop takes the link version of a step when it reads fewer words. MACs are
    numbered with the innermost spatial loop fastest, X loops before Y loops, and laid out on
    a grid `mesh` = (X, Y) wide (the larger of the physical and the used fan-out), row by row.

    `spatial`: ((dim, n, stride), ...) of level 0's spatial loops, the first `x_loops` on X.
    """
    key = (shape.axes, spatial, x_loops, mesh, loops)
    hit = _MAC_CACHE.get(key)
    if hit is not None:
        return hit
    naxes = len(shape.axes)
    _, distinct, lookup = _fanout_links(shape, spatial, x_loops, mesh)

    def step(shift):
        return min(lookup(shift)[0], distinct)  # links only when they save reads

    per_shift = {}
    total, weight = distinct, 1
    kinds = _transitions(shape, (1,) * naxes, 1, loops)
    for j in range(len(loops) - 1, -1, -1):
        shift = kinds[j][0]
        if shift not in per_shift:
            per_shift[shift] = step(shift)
        total += (loops[j][1] - 1) * weight * per_shift[shift]
        weight *= loops[j][1]
    if len(_MAC_CACHE) > 4096:
        _MAC_CACHE.clear()
    _MAC_CACHE[key] = total
    return total


_FANOUT_CACHE: dict = {}
_LINKS_CACHE: dict = {}


def _fanout_links(shape, spatial, x_loops, mesh):
    """(children, distinct offsets, link lookup) of a fan-out. Kept apart from the access
    caches: it depends on the spatial loops only, not on the temporal loops a polish move
    changes, and on a 32x32 array building it is most of an evaluation."""
    key = (shape.axes, spatial, x_loops, mesh)
    hit = _LINKS_CACHE.get(key)
    if hit is None:
        offsets, neighbours = _mesh_geometry(shape, spatial, x_loops, mesh)
        if len(_LINKS_CACHE) > 256:
            _LINKS_CACHE.clear()
        hit = _LINKS_CACHE[key] = (len(offsets),) + _link_table(offsets, neighbours)
    return hit


def _mesh_geometry(shape, spatial, x_loops, mesh):
    """Per child of a fan-out: its offset in the tensor's coordinates, its mesh neighbours
    (Timeloop numbers children with the innermost spatial loop fastest, X loops first, and
    lays them out row by row on a grid `mesh` = (X, Y) wide, without wrap-around)."""
    naxes = len(shape.axes)
    counts = [n for _, n, _ in spatial]
    offsets = []
    for idx in itertools.product(*(range(n) for n in reversed(counts))):
        idx = idx[::-1]  # innermost loop fastest
        off = [0] * naxes
        for (d, _, stride), i in zip(spatial, idx):
            for a, c in shape.dim_axes.get(d, ()):
                off[a] += c * stride * i
        offsets.append(tuple(off))
    h_size, v_size = mesh
    neighbours = []
    for e in range(len(offsets)):
        h, v = e % h_size, e // h_size
        near = []
        for hh, vv in ((h - 1, v), (h + 1, v), (h, v - 1), (h, v + 1)):
            n = vv * h_size + hh
            if 0 <= hh < h_size and 0 <= vv < v_size and n < len(offsets):
                near.append(n)
        neighbours.append(near)
    return offsets, neighbours


def _link_table(offsets, neighbours):
    """shift -> (multicast groups left after link transfers, children served by a link):
    a child whose data this step is what a neighbour held the step before (the tile moved by
    exactly their offset difference) gets it over the link."""
    distinct = len(set(offsets))
    table = {}
    by_shift: dict = {}  # offset difference to a neighbour -> the children that have it
    for e, near in enumerate(neighbours):
        for n in near:
            by_shift.setdefault(tuple(a - b for a, b in zip(offsets[n], offsets[e])),
                                set()).add(e)

    def lookup(shift):
        hit = table.get(shift)
        if hit is None:
            linked = by_shift.get(shift, set())
            rest = len({offsets[e] for e in range(len(offsets)) if e not in linked})
            hit = table[shift] = (rest, len(linked))
        return hit
    return distinct, lookup


def fanout_accesses(shape: TensorShape, tile_ext, full: int, loops, spatial, x_loops: int,
                    mesh) -> tuple:
    """(words the parent reads, words moved over links, words the children receive from the
    parent: a multicast read counted once per receiver) through a fan-out whose children
    are tiles of `full` words (extents `tile_ext`) under the temporal loops `loops` (innermost
    first), as Timeloop 019f107 counts them (`ComputeSpatialWorkingSet`).

    At every step each child needs its tile's delta (`_walk`'s rule); children needing the
    same delta share one read (multicast). With link transfers, a child whose delta equals
    the one a mesh neighbour received at the previous step (same delta shape, the tile moved
    by their offset difference) gets it from that neighbour; Timeloop uses the links at a step
    when the parent then delivers fewer words.
    """
    key = (shape.axes, tuple(tile_ext), loops, spatial, x_loops, mesh)
    hit = _FANOUT_CACHE.get(key)
    if hit is not None:
        return hit
    children, distinct, lookup = _fanout_links(shape, spatial, x_loops, mesh)
    extents = shape.extents(tile_ext)
    kinds = _transitions(shape, extents, full, loops)
    memo = {}

    def transition(k, state):
        """(delivered, linked, next state) of loop k's transition from `state` =
        (translation state, shape of the previous delta)."""
        translation, previous = state
        shift, size = kinds[k]
        if translation is None or translation == shift:
            words, translation = size, shift
            form = "empty" if size == 0 else "full" if size == full else shift
        else:
            words, translation, form = full, None, "full"
        if words == 0:
            return 0, 0, 0, (translation, form)
        without = distinct * words
        if form == previous:
            rest, linked = lookup(shift)
            if rest * words < without:
                return rest * words, linked * words, (children - linked) * words, \
                    (translation, form)
        return without, 0, children * words, (translation, form)

    def block(k, state):
        if k == 0:
            return 0, 0, 0, state
        key = (k, state)
        if key not in memo:
            a1, l1, w1, s1 = block(k - 1, state)
            c, cl, cw, s2 = transition(k - 1, s1)
            a2, l2, w2, s3 = block(k - 1, s2)
            n = loops[k - 1][1]
            memo[key] = (a1 + (n - 1) * (c + a2), l1 + (n - 1) * (cl + l2),
                         w1 + (n - 1) * (cw + w2), s3)
        return memo[key]

    delivered, linked, weighted, _ = block(len(loops), (None, "full"))
    result = (distinct * full + delivered, linked, children * full + weighted)
    if len(_FANOUT_CACHE) > 4096:
        _FANOUT_CACHE.clear()
    _FANOUT_CACHE[key] = result
    return result


_DISTINCT_CACHE: dict = {}


def distinct_children(shape: TensorShape, loops) -> int:
    """How many different tile positions of a tensor the spatial `loops` create (multicast groups).

    `loops`: ((dim, n, stride), ...). Children at the same position get identical data.
    """
    relevant = shape.relevant
    if shape.simple:
        product = 1
        for d, n, _ in loops:
            if d in relevant:
                product *= n
        return product
    moving = [lp for lp in loops if lp[0] in relevant]
    if not moving:
        return 1
    axes_used = [a for d, _, _ in moving for a, _ in shape.dim_axes[d]]
    if len(axes_used) == len(set(axes_used)):
        # Each loop moves its own axis: every index combination is a different position.
        product = 1
        for _, n, _ in moving:
            product *= n
        return product
    key = (shape.axes, tuple(moving))
    hit = _DISTINCT_CACHE.get(key)
    if hit is None:
        naxes = len(shape.axes)
        steps = []
        for d, n, stride in moving:
            step = [0] * naxes
            for a, c in shape.dim_axes[d]:
                step[a] += c * stride
            steps.append(step)
        positions = set()
        for idx in itertools.product(*(range(n) for _, n, _ in moving)):
            positions.add(tuple(sum(i * st[a] for i, st in zip(idx, steps))
                                for a in range(naxes)))
        if len(_DISTINCT_CACHE) > 4096:
            _DISTINCT_CACHE.clear()
        hit = _DISTINCT_CACHE[key] = len(positions)
    return hit
