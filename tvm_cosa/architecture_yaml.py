"""Reading architectures from YAML.

Formats:
- CoSA's / Timeloop 0.3 `arch: {arithmetic: ..., storage: [...]}` (innermost level first), with
  the bypass pattern from a mapspace file (`mapspace: {constraints: [{target, type: datatype |
  bypass, keep, bypass}]}`).
Presets are such files shipped in `tvm_cosa/presets/`, plus an energy table per level.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping as MappingT, Optional

from ._yaml import load_yaml
from .architecture import Architecture, Arithmetic, MemoryLevel
from .errors import InputError
from .problem import TENSOR_NAMES

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS = ("simba", "gemmini")


def load_architecture(arch, mapspace=None, *, name: Optional[str] = None) -> Architecture:
    """An `Architecture` from a preset name, a YAML path, or an already-parsed dict."""
    if isinstance(arch, Architecture):
        return arch if mapspace is None else apply_mapspace(arch, _as_dict(mapspace), mapspace)
    if isinstance(arch, str) and arch in PRESETS and not Path(arch).exists():
        arch_obj = load_preset(arch)
        return arch_obj if mapspace is None else apply_mapspace(
            arch_obj, _as_dict(mapspace), mapspace)
    source = arch if isinstance(arch, (str, Path)) else (name or "architecture")
    data = _as_dict(arch)
    name = name or (Path(arch).stem if isinstance(arch, (str, Path)) else "architecture")
    if isinstance(data, MappingT) and "arch" in data:
        result = from_timeloop_v03(data, name=name, source=source)
    else:
        raise InputError("unrecognised architecture format; expected a top-level 'arch' key "
                         "(CoSA / Timeloop 0.3)", source=source)
    if mapspace is not None:
        result = apply_mapspace(result, _as_dict(mapspace), mapspace)
    return result


def _as_dict(obj):
    if isinstance(obj, (str, Path)):
        return load_yaml(obj)
    if not isinstance(obj, MappingT):
        raise InputError(f"expected a path or a mapping, got {type(obj).__name__}")
    return obj


def _int(spec, key, source, level, default=None, *, allow_zero=False):
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < (0 if allow_zero else 1):
        raise InputError(f"level {level}: expected a {'non-negative' if allow_zero else 'positive'}"
                         f" integer, got {value!r}", source=source, field=key)
    return int(value)


def _first(spec, *keys):
    for k in keys:
        if k in spec:
            return k
    return keys[0]


def from_timeloop_v03(data: MappingT, *, name="architecture", source=None) -> Architecture:
    """CoSA's architecture format: `arch: {arithmetic: {...}, storage: [innermost, ...]}`."""
    source = source or name
    body = data["arch"]
    if not isinstance(body, MappingT):
        raise InputError("expected a mapping with 'arithmetic' and 'storage'", source=source,
                         field="arch")
    arith_spec = body.get("arithmetic")
    if not isinstance(arith_spec, MappingT):
        raise InputError("missing; expected {instances, word-bits}", source=source,
                         field="arch.arithmetic")
    arithmetic = Arithmetic(
        instances=_int(arith_spec, "instances", source, "arithmetic"),
        word_bits=_int(arith_spec, "word-bits", source, "arithmetic", 8),
        mesh_x=_int(arith_spec, "meshX", source, "arithmetic"),
        name=arith_spec.get("name", "__ARITH__"),
    )
    storage = body.get("storage")
    if not isinstance(storage, list) or not storage:
        raise InputError("missing or empty; expected a list of levels, innermost first",
                         source=source, field="arch.storage")
    levels = []
    for n, spec in enumerate(storage):
        if not isinstance(spec, MappingT) or "name" not in spec:
            raise InputError(f"level {n}: expected a mapping with a 'name'", source=source,
                             field="arch.storage")
        levels.append(_level_v03(spec, source))
    return Architecture(name, arithmetic, tuple(levels), timeloop_spec=dict(data))


def _level_v03(spec, source) -> MemoryLevel:
    lname = str(spec["name"]).strip()
    word_bits = _int(spec, "word-bits", source, lname, 8)
    technology = str(spec.get("technology", spec.get("class", "SRAM"))).strip()
    block_key = _first(spec, "block-size", "block_size")
    cluster_key = _first(spec, "cluster-size", "cluster_size")
    block = _int(spec, block_key, source, lname)
    cluster = _int(spec, cluster_key, source, lname)
    width = _int(spec, "width", source, lname)
    if width is not None and block is None:
        # Timeloop derives the block size from the width when it is not given.
        block = width // (word_bits * (cluster or 1))
    block, cluster = block or 1, cluster or 1
    if technology.upper() == "DRAM":
        entries = None
    elif "entries" in spec:
        entries = _int(spec, "entries", source, lname, allow_zero=True)
    elif "depth" in spec:
        entries = _int(spec, "depth", source, lname, allow_zero=True) * block
    elif "sizeKB" in spec:
        entries = int(spec["sizeKB"] * 1024 * 8 // word_bits)
    else:
        raise InputError(f"level {lname}: no capacity; give 'entries' (words per instance), "
                         "'depth' or 'sizeKB', or 'technology: DRAM'", source=source,
                         field="entries")
    read_bw = spec.get("read_bandwidth")
    write_bw = spec.get("write_bandwidth")
    if "bandwidth" in spec:  # deprecated in Timeloop: read = write = bandwidth / 2
        read_bw = write_bw = float(spec["bandwidth"]) / 2
    return MemoryLevel(
        name=lname,
        entries=entries,
        instances=_int(spec, "instances", source, lname, 1),
        word_bits=word_bits,
        mesh_x=_int(spec, "meshX", source, lname),
        block_size=block,
        cluster_size=cluster,
        read_bandwidth=None if read_bw is None else float(read_bw),
        write_bandwidth=None if write_bw is None else float(write_bw),
        shared_bandwidth=(None if spec.get("shared_bandwidth") is None
                          else float(spec["shared_bandwidth"])),
        technology=technology,
        num_ports=_int(spec, _first(spec, "num-ports", "n_ports"), source, lname, 2),
        num_banks=_int(spec, _first(spec, "num-banks", "n_banks"), source, lname, 2),
        network_word_bits=_int(spec, "network-word-bits", source, lname),
    )


def apply_mapspace(arch: Architecture, data: MappingT, source=None) -> Architecture:
    """Set each level's kept tensors from a mapspace's bypass (`datatype`) constraints."""
    source = source or "mapspace"
    body = data.get("mapspace", data) if isinstance(data, MappingT) else None
    constraints = body.get("constraints") if isinstance(body, MappingT) else None
    if not isinstance(constraints, list):
        raise InputError("expected 'mapspace: {constraints: [...]}'", source=source,
                         field="mapspace.constraints")
    keeps = {}
    for c in constraints:
        if not isinstance(c, MappingT) or c.get("type") not in ("datatype", "bypass"):
            continue
        target = c.get("target")
        arch.level_index(target)  # names the level if it does not exist
        kept = set(TENSOR_NAMES) - set(c.get("bypass") or [])
        if "keep" in c:
            kept = set(c.get("keep") or [])
        unknown = kept - set(TENSOR_NAMES)
        if unknown:
            raise InputError(f"level {target}: unknown tensors {sorted(unknown)}; expected "
                             f"{list(TENSOR_NAMES)}", source=source, field="keep")
        keeps[target] = kept
    spec = arch.timeloop_spec
    result = arch.with_bypass(keeps)
    return replace(result, timeloop_spec=spec)


def apply_energy_table(arch: Architecture, table: MappingT) -> Architecture:
    """Per-level energies `{level: {read: pJ, write: pJ}, arithmetic: pJ}` (per vector access)."""
    levels = list(arch.levels)
    for i, lv in enumerate(levels):
        entry = table.get(lv.name)
        if entry is not None:
            levels[i] = replace(lv, read_energy_pJ=float(entry["read"]),
                                write_energy_pJ=float(entry.get("write", entry["read"])))
    arithmetic = arch.arithmetic
    if "arithmetic" in table:
        arithmetic = replace(arithmetic, energy_pJ=float(table["arithmetic"]))
    return replace(arch, arithmetic=arithmetic, levels=tuple(levels))


def load_preset(name: str) -> Architecture:
    if name not in PRESETS:
        raise InputError(f"unknown architecture preset {name!r}; expected one of {list(PRESETS)} "
                         "or a path to an architecture YAML file")
    arch = load_architecture(PRESET_DIR / f"{name}.arch.yaml",
                             PRESET_DIR / f"{name}.mapspace.yaml", name=name)
    energy = PRESET_DIR / f"{name}.energy.yaml"
    if energy.exists():
        arch = apply_energy_table(arch, load_yaml(energy))
    if name == "gemmini":
        # Weight-stationary array: input channels along X (rows), output channels along Y.
        i = arch.level_index("Accumulator")
        levels = list(arch.levels)
        levels[i] = replace(levels[i], spatial_dims_x=("reduction",),
                            spatial_dims_y=("output_channel",))
        arch = replace(arch, levels=tuple(levels))
    return arch
