"""Timeloop map files (`mapping: [...]`) to and from `Mapping`.

Read the way timeloop-model 019f107 reads them:
- one `temporal` entry per storage level (`target`), `spatial` entries for the fan-out below a
  level, `bypass` (synonym `datatype`) entries with `keep` / `bypass` lists;
- `factors`: `D=n` or `Dn` tokens (timeloop-mapper writes `R1 S1 ...`); a missing dimension is 1;
- `permutation`: dimension letters, innermost loop first; missing letters are appended in the
  problem's dimension order;
- `split: n` (spatial only): the first n letters of the permutation go on X, the rest on Y;
  without `split` everything is on X;
- a level without a bypass entry keeps every tensor.

Written the way CoSA writes them (temporal then spatial entries per level, factors in the
problem's dimension order, then one bypass entry per level), with a spatial entry only on levels
whose instance count differs from the level below, and `split` only when something is on Y.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping as MappingT

import yaml

from ..errors import InputError
from ..mapping import LevelMapping, Mapping

_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z_]*?)=?(\d+)$")


def parse_factors(text, dims, *, source=None, field=None) -> dict:
    """`"R=1 S=3 P7"` -> {"R": 1, "S": 3, "P": 7}; dimensions not named are absent."""
    if isinstance(text, MappingT):  # {R: 1, S: 3} is accepted too
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for token in str(text).replace(",", " ").split():
            match = _TOKEN.match(token)
            if not match:
                raise InputError(f"cannot read factor {token!r}; expected D=n or Dn "
                                 f"(e.g. 'R=3 S=3' or 'R3 S3')", source=source, field=field)
            items.append((match.group(1), int(match.group(2))))
    out = {}
    for dim, value in items:
        if dim not in dims:
            raise InputError(f"unknown dimension {dim!r}; the problem has {list(dims)}",
                             source=source, field=field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"factor of {dim} must be a positive integer, got {value!r}",
                             source=source, field=field)
        if dim in out:
            raise InputError(f"dimension {dim} is given twice", source=source, field=field)
        out[dim] = value
    return out


def parse_permutation(text, dims, *, source=None, field=None) -> tuple:
    """Innermost-first dimension letters; unknown letters are an error, missing ones appended."""
    if text is None:
        letters = []
    elif isinstance(text, (list, tuple)):
        letters = [str(x) for x in text]
    else:
        letters = list(str(text).replace(" ", ""))
    for d in letters:
        if d not in dims:
            raise InputError(f"unknown dimension {d!r} in permutation; the problem has "
                             f"{list(dims)}", source=source, field=field)
    if len(set(letters)) != len(letters):
        raise InputError(f"permutation {text!r} repeats a dimension", source=source, field=field)
    return tuple(letters) + tuple(d for d in dims if d not in letters)


def read_mapping(path_or_data, problem, arch, *, keep_unlisted: bool = True) -> Mapping:
    """A Timeloop map file (path, parsed YAML, or the list of entries) -> Mapping.

    `keep_unlisted`: a level without a bypass entry keeps every tensor, as in Timeloop; False:
    it keeps what the architecture's own bypass pattern (e.g. from a mapspace) says."""
    if isinstance(path_or_data, (str, Path)):
        source = str(path_or_data)
        from ..architecture_yaml import read_yaml
        data = read_yaml(path_or_data)
    else:
        source, data = "mapping", path_or_data
    entries = data.get("mapping") if isinstance(data, MappingT) else data
    if not isinstance(entries, list):
        raise InputError("expected 'mapping: [...]', a list of {target, type, factors, "
                         "permutation} entries", source=source, field="mapping")
    dims = problem.dims
    levels = [LevelMapping() for _ in arch.levels]
    seen = set()
    for n, entry in enumerate(entries):
        field = f"mapping[{n}]"
        if not isinstance(entry, MappingT):
            raise InputError(f"expected a mapping entry, got {entry!r}", source=source,
                             field=field)
        _check_entry_keys(entry, source, field)
        target = str(entry.get("target", "")).strip()
        if target not in arch.level_names:
            raise InputError(f"target {target!r} is not a level of {arch.name}; levels are "
                             f"{list(arch.level_names)}", source=source, field=f"{field}.target")
        i = arch.level_index(target)
        kind = entry.get("type")
        if (target, kind) in seen:
            raise InputError(f"a second {kind} entry for {target}", source=source, field=field)
        seen.add((target, kind))
        if kind == "temporal":
            levels[i].temporal = _nontrivial(parse_factors(
                entry.get("factors", ""), dims, source=source, field=f"{field}.factors"))
            levels[i].order = parse_permutation(entry.get("permutation"), dims, source=source,
                                                field=f"{field}.permutation")
        elif kind == "spatial":
            factors = parse_factors(entry.get("factors", ""), dims, source=source,
                                    field=f"{field}.factors")
            order = parse_permutation(entry.get("permutation"), dims, source=source,
                                      field=f"{field}.permutation")
            split = entry.get("split", len(order))
            if isinstance(split, bool) or not isinstance(split, int) or split < 0:
                raise InputError(f"split must be a non-negative integer, got {split!r}",
                                 source=source, field=f"{field}.split")
            levels[i].spatial_x = {d: factors[d] for d in order[:split] if factors.get(d, 1) > 1}
            levels[i].spatial_y = {d: factors[d] for d in order[split:] if factors.get(d, 1) > 1}
        elif kind in ("bypass", "datatype"):
            levels[i].keeps = _keeps(entry, problem, source, field)
        else:
            raise InputError(f"unknown type {kind!r}; expected temporal, spatial, bypass or "
                             "datatype", source=source, field=f"{field}.type")
    all_tensors = frozenset(problem.tensor_names)
    for lv, level in zip(levels, arch.levels):
        if lv.keeps is None:  # Timeloop: a level without a bypass entry keeps everything
            lv.keeps = all_tensors if keep_unlisted else frozenset(level.keeps)
    return Mapping(levels, info={"source": source})


# The keys Timeloop's map parser reads, per entry type; anything else is most likely a typo that
# Timeloop itself would ignore silently.
ENTRY_KEYS = {"temporal": {"factors", "permutation"},
              "spatial": {"factors", "permutation", "split"},
              "bypass": {"keep", "bypass"}, "datatype": {"keep", "bypass"}}


def _check_entry_keys(entry, source, field):
    allowed = {"target", "type"} | ENTRY_KEYS.get(entry.get("type"), set())
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in a {entry.get('type')} entry; expected "
                         f"{sorted(allowed)}", source=source, field=f"{field}.{unknown[0]}")


def _nontrivial(factors: dict) -> dict:
    return {d: f for d, f in factors.items() if f > 1}


def _keeps(entry, problem, source, field) -> frozenset:
    names = set(problem.tensor_names)
    for key in ("keep", "bypass"):
        value = entry.get(key) or []
        if not isinstance(value, list) or any(str(t) not in names for t in value):
            raise InputError(f"{key} must list tensors of {sorted(names)}, got {value!r}",
                             source=source, field=f"{field}.{key}")
    if "keep" in entry:
        return frozenset(map(str, entry.get("keep") or []))
    return frozenset(names - set(map(str, entry.get("bypass") or [])))


# ---- writing ------------------------------------------------------------------------------
def mapping_entries(mapping: Mapping, problem, arch) -> list:
    """The `mapping:` list timeloop-model reads for this schedule."""
    if len(mapping.levels) != arch.num_levels:
        raise InputError(f"mapping has {len(mapping.levels)} levels, architecture {arch.name} "
                         f"has {arch.num_levels}")
    if mapping.tile_levels and any(i != j for (_, i), j in mapping.tile_levels.items()):
        raise InputError("an uneven mapping (tile_levels, CoSA's Z) has no Timeloop map format")
    dims = problem.dims
    entries, bypass = [], []
    for i, (lv, level) in enumerate(zip(mapping.levels, arch.levels)):
        entries.append({"target": level.name, "type": "temporal",
                        "factors": _factor_text(lv.temporal, dims),
                        "permutation": "".join(lv.full_order(dims))})
        if arch.fanout_total(i) > 1:
            entries.append(_spatial_entry(lv, level.name, dims))
        elif lv.spatial_product() > 1:
            raise InputError(f"level {level.name} has spatial factors {lv.spatial} but feeds "
                             f"as many instances as it has ({level.instances}); Timeloop accepts "
                             "spatial factors only where the instance count changes")
        kept = mapping.kept(arch, i)
        bypass.append({"target": level.name, "type": "bypass",
                       "keep": [t for t in problem.tensor_names if t in kept],
                       "bypass": [t for t in problem.tensor_names if t not in kept]})
    return entries + bypass


def _factor_text(factors, dims) -> str:
    return " ".join(f"{d}={factors.get(d, 1)}" for d in dims)


def _spatial_entry(lv: LevelMapping, name, dims) -> dict:
    both = set(lv.spatial_x) & set(lv.spatial_y)
    if any(lv.spatial_x[d] > 1 and lv.spatial_y[d] > 1 for d in both):
        raise InputError(f"level {name}: dimension(s) {sorted(both)} are split on both X and Y; "
                         "a Timeloop map gives each dimension one spatial factor")
    x = [d for d, f in lv.spatial_x.items() if f > 1]
    y = [d for d, f in lv.spatial_y.items() if f > 1]
    rest = [d for d in dims if d not in x and d not in y]
    entry = {"target": name, "type": "spatial", "factors": _factor_text(lv.spatial, dims),
             "permutation": "".join(x + rest + y)}
    if y:
        entry["split"] = len(x) + len(rest)
    return entry


def mapping_yaml(mapping: Mapping, problem, arch) -> str:
    """The map file's text: one flow-style line per loop entry, like CoSA's writer."""
    entries = mapping_entries(mapping, problem, arch)
    lines = ["mapping:"]
    for e in entries:
        lines.append("- " + yaml.safe_dump(e, default_flow_style=True, sort_keys=False,
                                           width=1000).strip())
    return "\n".join(lines) + "\n"


def write_mapping(mapping: Mapping, problem, arch, path) -> Path:
    path = Path(path)
    path.write_text(mapping_yaml(mapping, problem, arch))
    return path
