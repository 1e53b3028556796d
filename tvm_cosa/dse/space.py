"""Design spaces: a base architecture and lists of parameter values.

    base: gemmini              # "gemmini" (GemminiConfig fields), another preset, or an arch file
    params:
      dim: [8, 16, 32]                     # GemminiConfig fields when the base is gemmini
      scratchpad_kib: [128, 256, 512]
    # or, for any other base (levels by name, fields of the short architecture format):
    #   levels.GlobalBuffer.entries: [32768, 65536]
    #   levels.DRAM.read_bandwidth: [8, 16]
    #   macs.instances: [256, 1024]
    sample: 20                 # optional: N points drawn from the grid (without repeats)
    seed: 0                    # the draw's seed (default 0)

The grid is the product of the lists, in the order the params are written (the last one varies
fastest). Every point is built before anything runs, so a value the hardware cannot have (a
scratchpad that is not a whole number of rows, a level whose instances do not divide the MACs)
is an `InputError` naming the key and the value, not a failure in the middle of a sweep.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping as MappingT, Optional

from ..errors import CoSAError, InputError

GEMMINI = "gemmini"
TOP_KEYS = ("base", "params", "sample", "seed")
# Level fields a space may set (short-format names -> MemoryLevel attribute, value kind).
LEVEL_FIELDS = {
    "entries": ("entries", int), "instances": ("instances", int), "mesh_x": ("mesh_x", int),
    "word_bits": ("word_bits", int), "block_size": ("block_size", int),
    "cluster_size": ("cluster_size", int), "num_banks": ("num_banks", int),
    "num_ports": ("num_ports", int), "read_bandwidth": ("read_bandwidth", float),
    "write_bandwidth": ("write_bandwidth", float),
    "shared_bandwidth": ("shared_bandwidth", float),
    "read_energy_pJ": ("read_energy_pJ", float), "write_energy_pJ": ("write_energy_pJ", float),
}
MAC_FIELDS = {"instances": int, "mesh_x": int, "word_bits": int, "energy_pJ": float}


@dataclass(frozen=True)
class Point:
    """One configuration: its position in the space, its parameter values, its architecture."""

    index: int
    values: tuple  # ((param, value), ...) in the space's order
    arch: Any = dataclasses.field(compare=False, repr=False)

    @property
    def params(self) -> dict:
        return dict(self.values)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values)


@dataclass
class Space:
    base: str
    params: dict  # name -> list of values, in the file's order
    points: list  # [Point]
    grid_size: int
    source: str = "space"

    @property
    def param_names(self) -> list:
        return list(self.params)


def load_space(spec, *, source: Optional[str] = None) -> Space:
    """A `Space` from a YAML path or an already-parsed dict (InputError on any bad entry)."""
    if isinstance(spec, (str, Path)):
        from .._yaml import load_yaml

        path = Path(spec)
        if not path.is_file():
            raise InputError("no such space file", source=path)
        source = source or str(path)
        data = load_yaml(path)
    else:
        data = spec
        source = source or "space"
    if not isinstance(data, MappingT):
        raise InputError(f"expected a mapping with keys {list(TOP_KEYS)}, got "
                         f"{type(data).__name__}", source=source)
    unknown = sorted(set(map(str, data)) - set(TOP_KEYS))
    if unknown:
        raise InputError(f"unknown key(s) {unknown}; a space file has {list(TOP_KEYS)}",
                         source=source, field=unknown[0])
    base = data.get("base", GEMMINI)
    if not isinstance(base, str) or not base:
        raise InputError(f"expected a preset name (gemmini, simba) or an architecture file, got "
                         f"{base!r}", source=source, field="base")
    builder = _builder(base, source)
    params = _params(data.get("params"), builder, source)
    grid_size = 1
    for values in params.values():
        grid_size *= len(values)
    indices = _sample(data, grid_size, source)
    names = list(params)
    lists = [params[n] for n in names]
    points = []
    for index in indices:
        combo = _grid_point(lists, index)
        values = tuple(zip(names, combo))
        points.append(Point(index=index, values=values, arch=builder.build(values, source)))
    return Space(base=base, params=params, points=points, grid_size=grid_size, source=source)


def _grid_point(lists, index):
    """The index-th point of the product of `lists` (last list fastest, as itertools.product)."""
    out = []
    for values in reversed(lists):
        index, pos = divmod(index, len(values))
        out.append(values[pos])
    return tuple(reversed(out))


def _sample(data, grid_size, source) -> list:
    if "sample" not in data:
        if "seed" in data:
            raise InputError("a seed without 'sample: N' draws nothing; add sample or remove "
                             "seed", source=source, field="seed")
        return list(range(grid_size))
    n = data["sample"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"expected a positive number of points to draw, got {n!r}",
                         source=source, field="sample")
    if n > grid_size:
        raise InputError(f"{n} points asked but the grid has only {grid_size}; lower sample or "
                         "remove it to run the whole grid", source=source, field="sample")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"expected an integer seed, got {seed!r}", source=source, field="seed")
    return sorted(random.Random(seed).sample(range(grid_size), n))


def _params(raw, builder, source) -> dict:
    if raw is None or not isinstance(raw, MappingT) or not raw:
        raise InputError("expected a mapping of parameter -> list of values, e.g. "
                         "'params: {dim: [8, 16]}'", source=source, field="params")
    params = {}
    for name, values in raw.items():
        key = f"params.{name}"
        kind = builder.kind(str(name), key, source)
        if not isinstance(values, list):
            values = [values]  # a single value fixes the parameter
        if not values:
            raise InputError(f"empty list; expected at least one {kind.__name__} value",
                             source=source, field=key)
        checked = [_value(v, kind, key, source) for v in values]
        if len(set(checked)) != len(checked):
            raise InputError(f"repeated values {values}; each value once", source=source,
                             field=key)
        params[str(name)] = checked
    return params


def _value(v, kind, key, source):
    if kind is str:
        if isinstance(v, str):
            return v
    elif kind is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    elif kind is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    raise InputError(f"value {v!r} is not {'an' if kind is int else 'a'} {kind.__name__}",
                     source=source, field=key)


# ---- builders: parameter values -> Architecture --------------------------------------------
class _GemminiBuilder:
    """Points are GemminiConfig(**values).architecture()."""

    def __init__(self):
        from ..target.gemmini.config import GemminiConfig

        self.config_cls = GemminiConfig
        self.fields = {f.name: f.type for f in dataclasses.fields(GemminiConfig)}

    def kind(self, name, key, source):
        defaults = self.config_cls()
        if name not in self.fields:
            raise InputError(f"unknown parameter {name!r}; the gemmini base takes GemminiConfig "
                             f"fields: {', '.join(self.fields)}", source=source, field=key)
        default = getattr(defaults, name)
        return float if isinstance(default, float) else type(default)

    def build(self, values, source):
        try:
            config = self.config_cls(**dict(values))
            return config.architecture()
        except CoSAError as err:
            raise _point_error(values, err, source) from None


class _ArchBuilder:
    """Points are the base architecture with `levels.<name>.<field>` / `macs.<field>` set."""

    def __init__(self, base, source):
        from ..architecture_yaml import load_architecture

        try:
            self.arch = load_architecture(base)
        except CoSAError as err:
            raise InputError(f"cannot load the base architecture: {err}", source=source,
                             field="base") from None

    def kind(self, name, key, source):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "levels":
            if parts[1] not in self.arch.level_names:
                raise InputError(f"no level {parts[1]!r} in {self.arch.name}; levels are "
                                 f"{list(self.arch.level_names)}", source=source, field=key)
            if parts[2] not in LEVEL_FIELDS:
                raise InputError(f"unknown level field {parts[2]!r}; expected one of "
                                 f"{list(LEVEL_FIELDS)}", source=source, field=key)
            return LEVEL_FIELDS[parts[2]][1]
        if len(parts) == 2 and parts[0] == "macs":
            if parts[1] not in MAC_FIELDS:
                raise InputError(f"unknown MAC field {parts[1]!r}; expected one of "
                                 f"{list(MAC_FIELDS)}", source=source, field=key)
            return MAC_FIELDS[parts[1]]
        raise InputError(f"unknown parameter {name!r}; with base {self.arch.name!r} parameters "
                         "are 'levels.<level>.<field>' or 'macs.<field>'", source=source,
                         field=key)

    def build(self, values, source):
        from ..architecture import Architecture

        arch = self.arch
        levels = {lv.name: {} for lv in arch.levels}
        macs = {}
        for name, value in values:
            parts = name.split(".")
            if parts[0] == "levels":
                levels[parts[1]][LEVEL_FIELDS[parts[2]][0]] = value
            else:
                macs[parts[1]] = value
        label = "-".join(f"{n.split('.')[-2] if n.startswith('levels') else 'macs'}."
                         f"{n.split('.')[-1]}{v:g}" for n, v in values)
        try:
            for name, value in values:
                _check_positive(name, value)
            new_levels = tuple(dataclasses.replace(lv, **levels[lv.name]) for lv in arch.levels)
            arithmetic = dataclasses.replace(arch.arithmetic, **macs)
            # timeloop_spec dropped: the user's Timeloop file no longer describes this point
            return Architecture(name=f"{arch.name}-{label}", arithmetic=arithmetic,
                                levels=new_levels, timeloop_spec=None)
        except CoSAError as err:
            raise _point_error(values, err, source) from None


def _check_positive(name, value):
    if value <= 0 and not name.endswith("energy_pJ"):
        raise InputError(f"{name} must be positive, got {value!r}", field=name)


def _builder(base, source):
    if base == GEMMINI:
        return _GemminiBuilder()
    return _ArchBuilder(base, source)


def _point_error(values, err, source) -> InputError:
    """Name the space key behind a configuration the hardware model rejects."""
    field = getattr(err, "field", None)
    names = [n for n, _ in values]
    key = next((n for n in names if field and (n == field or n.endswith("." + str(field)))),
               names[0] if len(names) == 1 else None)  # a default broken by the one param
    point = ", ".join(f"{n}={v!r}" for n, v in values)
    where = f"params.{key}" if key else "params"
    return InputError(f"the point ({point}) is not a valid configuration: {err}",
                      source=source, field=where)


__all__ = ["Space", "Point", "load_space"]
