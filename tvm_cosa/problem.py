"""The workload: a perfect loop nest of named dimensions and the tensors it touches.

A `Problem` is Timeloop's problem shape in Python. Each tensor has one entry per axis, and each
axis is an affine sum of dimensions (`Inputs` width = Wstride * P + Wdilation * R), so the input
sliding window of a convolution, grouped convolution and (batched) matmul all use one code path.
Tensor names follow Timeloop's data spaces (`Weights`, `Inputs`, `Outputs`) so that the bypass
pattern of an architecture applies to any operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping as MappingT

from .errors import InputError

WEIGHTS, INPUTS, OUTPUTS = "Weights", "Inputs", "Outputs"
TENSOR_NAMES = (WEIGHTS, INPUTS, OUTPUTS)

# Timeloop's cnn-layer dimension order; also the order CoSA writes factors in.
CNN_LAYER_DIMS = ("R", "S", "P", "Q", "C", "K", "N")


@dataclass(frozen=True)
class Tensor:
    """One data space. `axes[a]` is a tuple of (dimension, coefficient) terms."""

    name: str
    axes: tuple[tuple[tuple[str, int], ...], ...]
    is_output: bool = False

    @property
    def dims(self) -> frozenset[str]:
        """The dimensions that index this tensor (A[d][t] = 1 in CoSA's terms)."""
        return frozenset(d for axis in self.axes for d, _ in axis)

    def axis_extents(self, tile: MappingT[str, int]) -> tuple[int, ...]:
        """Bounding box of a tile: each axis spans sum(coef * (extent - 1)) + 1 points."""
        return tuple(sum(c * (tile.get(d, 1) - 1) for d, c in axis) + 1 for axis in self.axes)

    def tile_size(self, tile: MappingT[str, int]) -> int:
        """Words in the bounding box of the tile with the given per-dimension extents."""
        return math.prod(self.axis_extents(tile))

    def has_halo(self) -> bool:
        """True when some axis sums several dimensions (a sliding window)."""
        return any(len(axis) > 1 for axis in self.axes)


# What a hardware constraint may name instead of a dimension letter (see Problem.dims_with_role).
DIMENSION_ROLES = ("reduction", "output_channel", "window", "pixel")


def is_dimension_token(token: str) -> bool:
    """A role, or a dimension name as Timeloop writes them (an upper-case letter)."""
    return token in DIMENSION_ROLES or (len(token) == 1 and token.isupper())


@dataclass(frozen=True)
class Problem:
    """A layer: ordered dimension sizes, tensors, and the parameters it was built from."""

    name: str
    kind: str  # "conv2d", "matmul", or "custom"
    sizes: tuple[tuple[str, int], ...]
    tensors: tuple[Tensor, ...]
    params: tuple[tuple[str, int], ...] = field(default=())

    def __post_init__(self):
        names = [d for d, _ in self.sizes]
        if len(set(names)) != len(names):
            raise InputError(f"dimension names repeat: {names}", source=self.name, field="sizes")
        for d, n in self.sizes:
            if not isinstance(n, int) or n < 1:
                raise InputError(f"dimension {d} must be a positive integer, got {n!r}",
                                 source=self.name, field=d)
        for t in self.tensors:
            unknown = t.dims - set(names)
            if unknown:
                raise InputError(f"tensor {t.name} uses unknown dimensions {sorted(unknown)}",
                                 source=self.name, field="tensors")

    # ---- views ----------------------------------------------------------------------------
    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(d for d, _ in self.sizes)

    @property
    def size(self) -> dict[str, int]:
        return dict(self.sizes)

    @property
    def param(self) -> dict[str, int]:
        return dict(self.params)

    @property
    def macs(self) -> int:
        return math.prod(n for _, n in self.sizes)

    def tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"problem {self.name} has no tensor {name!r}; it has "
                       f"{[t.name for t in self.tensors]}")

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    def full_size(self, tensor: str) -> int:
        """Words of the whole tensor (for an input: the padded input, as Timeloop counts it)."""
        return self.tensor(tensor).tile_size(self.size)

    def relevance(self) -> dict[str, dict[str, int]]:
        """CoSA's A matrix as a dict: A[dim][tensor] = 1 if dim indexes tensor."""
        return {d: {t.name: int(d in t.dims) for t in self.tensors} for d in self.dims}

    def dims_with_role(self, role: str) -> frozenset[str]:
        """Dimensions by the tensors they index, so hardware constraints need no letter names.

        `reduction`: index Weights and Inputs (not through a sliding window), not Outputs
        (conv C, matmul K). `output_channel`: Weights and Outputs, not Inputs (conv K,
        matmul N). `window`: enter Inputs through a sliding window (conv R, S). `pixel`: Inputs
        and Outputs, not Weights (conv P, Q, N; matmul M).
        """
        roles = self.__dict__.setdefault("_roles", {})  # memo: the checker asks per candidate
        if role in roles:
            return roles[role]
        tensors = {t.name: t for t in self.tensors}
        w, i, o = (tensors.get(n) for n in TENSOR_NAMES)

        def idx(t, d):
            return t is not None and d in t.dims

        def windowed(d):
            return i is not None and any(len(ax) > 1 and d in dict(ax) for ax in i.axes)

        test = {
            "reduction": lambda d: idx(w, d) and idx(i, d) and not idx(o, d) and not windowed(d),
            "output_channel": lambda d: idx(w, d) and idx(o, d) and not idx(i, d),
            "window": lambda d: windowed(d) and not idx(o, d),
            "pixel": lambda d: idx(i, d) and idx(o, d) and not idx(w, d),
        }.get(role)
        if test is None:
            raise InputError(f"unknown dimension role {role!r}; expected one of "
                             f"{', '.join(DIMENSION_ROLES)}")
        found = frozenset(d for d in self.dims if test(d))
        roles[role] = found
        return found

    def resolve_dims(self, tokens) -> frozenset[str]:
        """Dimension names and roles (see `dims_with_role`) to the set of this layer's dims."""
        out = set()
        for tok in tokens:
            if tok in self.size:
                out.add(tok)
            elif tok in DIMENSION_ROLES:
                out |= self.dims_with_role(tok)
        return frozenset(out)

    def key(self) -> tuple:
        """Hashable identity of the layer's shape (not its name), for de-duplication and caches."""
        return (self.kind, self.sizes, self.params,
                tuple((t.name, t.axes, t.is_output) for t in self.tensors))

    def renamed(self, name: str) -> "Problem":
        return Problem(name, self.kind, self.sizes, self.tensors, self.params)

    def __str__(self):
        shape = " ".join(f"{d}={n}" for d, n in self.sizes)
        return f"{self.kind} {self.name} [{shape}]"

    # ---- constructors ---------------------------------------------------------------------
    @classmethod
    def conv2d(cls, *, N=1, K, C, P, Q, R=1, S=1, stride=(1, 1), dilation=(1, 1), groups=1,
               name="conv2d") -> "Problem":
        """A 2-D convolution in Timeloop's cnn-layer terms.

        P/Q are the output width/height, R/S the filter width/height, C/K the input/output
        channels *per group*. `stride` and `dilation` are (height, width). Padding is already
        folded into the input: the input is (P-1)*Wstride + (R-1)*Wdilation + 1 wide.
        With `groups` > 1 a dimension G indexes all three tensors (depthwise: C = K = 1).
        """
        (hstride, wstride), (hdil, wdil) = _pair(stride, "stride"), _pair(dilation, "dilation")
        sizes = {"R": R, "S": S, "P": P, "Q": Q, "C": C, "K": K, "N": N}
        group_axis = ()
        if groups != 1:
            sizes = {"G": groups, **sizes}
            group_axis = ((("G", 1),),)
        tensors = (
            Tensor(WEIGHTS, group_axis + ((("K", 1),), (("C", 1),), (("S", 1),), (("R", 1),))),
            Tensor(INPUTS, ((("N", 1),),) + group_axis + (
                (("C", 1),), (("Q", hstride), ("S", hdil)), (("P", wstride), ("R", wdil)))),
            Tensor(OUTPUTS, ((("N", 1),),) + group_axis + ((("K", 1),), (("Q", 1),), (("P", 1),)),
                   is_output=True),
        )
        params = (("Hstride", hstride), ("Wstride", wstride), ("Hdilation", hdil),
                  ("Wdilation", wdil), ("groups", groups))
        return cls(name, "conv2d", tuple(sizes.items()), tensors, params)

    @classmethod
    def matmul(cls, *, M, N, K, batch=1, name="matmul") -> "Problem":
        """Outputs[b, m, n] += Inputs[b, m, k] * Weights[b, k, n] (dense / Gemm / batched)."""
        sizes = {"M": M, "N": N, "K": K}
        batch_axis = ()
        if batch != 1:
            sizes = {"B": batch, **sizes}
            batch_axis = ((("B", 1),),)
        tensors = (
            Tensor(WEIGHTS, batch_axis + ((("K", 1),), (("N", 1),))),
            Tensor(INPUTS, batch_axis + ((("M", 1),), (("K", 1),))),
            Tensor(OUTPUTS, batch_axis + ((("M", 1),), (("N", 1),)), is_output=True),
        )
        return cls(name, "matmul", tuple(sizes.items()), tensors, (("batch", batch),))

    @classmethod
    def from_dict(cls, data: MappingT, *, name="layer", source=None) -> "Problem":
        """CoSA's / Timeloop's `problem:` mapping (shape cnn-layer), or our matmul form."""
        src = source or name
        if not isinstance(data, MappingT):
            raise InputError("expected a mapping with a 'problem' key", source=src)
        prefix = "problem." if "problem" in data else ""
        body = data.get("problem", data)
        if not isinstance(body, MappingT):
            raise InputError("expected a mapping of dimension sizes", source=src, field="problem")
        if "instance" in body:  # Timeloop v0.4: problem: {shape: ..., instance: {...}}
            if not isinstance(body["instance"], MappingT):
                raise InputError("expected a mapping of dimension sizes", source=src,
                                 field=f"{prefix}instance")
            prefix += "instance."
            body = {**body["instance"], "shape": body.get("shape", "cnn-layer")}
        shape = body.get("shape", "cnn-layer")
        if isinstance(shape, MappingT):
            shape = shape.get("name", "cnn-layer")

        def get(key, default=None):
            value = body.get(key, default)
            if value is None:
                raise InputError("missing; expected a positive integer", source=src,
                                 field=prefix + key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"expected a positive integer, got {value!r}", source=src,
                                 field=prefix + key)
            return value

        def check_fields(dims):
            # A misspelt stride or dimension would otherwise silently default to 1.
            known = (*dims, "shape", "version", "name", "densities")
            for key in body:
                if key not in known:
                    raise InputError(f"unknown field for shape {shape!r}; expected some of "
                                     f"{list(known)}", source=src, field=prefix + str(key))

        if shape in ("cnn-layer", "conv2d", "cnn_layer"):
            check_fields(("R", "S", "P", "Q", "C", "K", "N", "G", "Hstride", "Wstride",
                          "Hdilation", "Wdilation"))
            return cls.conv2d(R=get("R"), S=get("S"), P=get("P"), Q=get("Q"), C=get("C"),
                              K=get("K"), N=get("N", 1),
                              stride=(get("Hstride", 1), get("Wstride", 1)),
                              dilation=(get("Hdilation", 1), get("Wdilation", 1)),
                              groups=get("G", 1), name=name)
        if shape in ("matmul", "gemm", "dense"):
            check_fields(("M", "N", "K", "B"))
            return cls.matmul(M=get("M"), N=get("N"), K=get("K"), batch=get("B", 1), name=name)
        raise InputError(f"unknown shape {shape!r}; expected 'cnn-layer' or 'matmul'",
                         source=src, field=prefix + "shape")

    @classmethod
    def from_yaml(cls, path) -> "Problem":
        """Load a CoSA-format layer file (`problem: {R, S, P, Q, C, K, N, strides...}`)."""
        from ._yaml import load_yaml

        path = Path(path)
        return cls.from_dict(load_yaml(path), name=path.stem, source=path)


def _pair(value, what):
    if isinstance(value, int):
        return value, value
    try:
        h, w = value
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an int or an (height, width) pair, got {value!r}")
    return int(h), int(w)


def prime_factors(n: int) -> list[int]:
    """Prime factors of n in ascending order (56 -> [2, 2, 2, 7])."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out
