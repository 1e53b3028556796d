"""Reading architectures from YAML.

`load_architecture(path)` detects the format from the top-level keys:

1. ``arch:`` -- CoSA's / Timeloop 0.3's flat list, innermost level first::

       arch:
         arithmetic: {instances: 1024, word-bits: 8, meshX: 16}
         storage:
         - {name: Registers, entries: 1, instances: 1024, word-bits: 8}
         - {name: DRAM, technology: DRAM, word-bits: 8, block-size: 64, bandwidth: 20}

   The bypass pattern comes from a mapspace file (``--mapspace``): ``mapspace: {constraints:
   [{target: LEVEL, type: bypass | datatype, keep: [...], bypass: [...]}]}``.

2. ``architecture: {version, subtree: [...]}`` -- Timeloop's hierarchical format (versions 0.2 to
   0.4, the Timeloop/Accelergy exercises). A subtree holds ``local`` components (outermost first)
   and one inner ``subtree``; a name ``PE[0..15]`` means 16 instances, and nested ranges multiply.
   Components are classified by ``class`` / ``subclass``: storage (DRAM, SRAM, regfile,
   smartbuffer_*, storage, ...), compute (mac, intmac, fpmac, compute: the MAC array) or network
   (XY_NoC, ...: ignored). Attributes: ``depth`` (rows), ``width`` (bits per row), ``word-bits``
   or ``datawidth``, ``block-size``, ``cluster-size``, ``meshX``, ``read_bandwidth``,
   ``write_bandwidth``, ``entries``, ``instances``.

   Formats 1 and 2 are read exactly as timeloop-model (019f107) reads them, since it reads the
   same file: attribute names verbatim in Timeloop's spellings (a ``word_bits`` is not read; a
   warning names it and the spelling to use), 16-bit words by default, a component's class by
   Timeloop's substrings (others are ignored, with a warning), the compute component anywhere
   in its list, and no attribute passed from a subtree to its components (Accelergy does that,
   timeloop-model does not).

3. ``architecture: {version: 0.4, nodes: [...]}`` -- Timeloop 0.4 (timeloopfe): ``!Container``,
   ``!Component``, ``!Parallel`` (its branches become consecutive levels, listed order = outer
   first) and ``!Nothing``; ``spatial: {meshX, meshY}`` replicates a node and everything below it;
   ``constraints: {dataspace: {keep, bypass, keep_only}}`` sets the bypass pattern; the last
   component is the MAC array. Container attributes are inherited (timeloopfe does so).
   Format 3 keeps the loose reading (`-` = `_`, 8-bit words by default): timeloop-model 019f107
   does not read it, so there is no Timeloop reading to follow.

4. Our short format (``levels:`` at the top), innermost level first::

       name: my-accel
       macs: {instances: 256, mesh_x: 16, word_bits: 8, energy_pJ: 0.25}
       levels:
         - {name: RF, entries: 1, instances: 256, mesh_x: 16, keeps: [Weights]}
         - {name: Acc, entries: 16384, word_bits: 32, keeps: [Outputs],
            spatial_x: [reduction], spatial_y: [output_channel]}
         - {name: Spad, entries: 262144, keeps: [Inputs, Weights],
            shares: {Inputs: 0.5, Weights: 0.5}, read_energy_pJ: 3.5, write_energy_pJ: 3.9}
         - {name: DRAM, read_bandwidth: 2.875, write_bandwidth: 2.875, block_size: 64}

   Per level: ``name`` (required); ``entries`` (words per instance; only the outermost level may
   omit it, which makes it an unbounded DRAM); ``instances`` (default 1); ``mesh_x`` (X size of
   the instances' layout, default all on X); ``word_bits`` (default the MACs'); ``keeps`` or
   ``bypass`` (tensor names, default all); ``shares`` (tensor -> fraction of entries);
   ``block_size``, ``cluster_size``; ``read_bandwidth`` / ``write_bandwidth`` /
   ``shared_bandwidth`` (words per cycle per instance, default unlimited); ``read_energy_pJ`` /
   ``write_energy_pJ`` (per vector access, default estimated); ``technology``, ``num_ports``,
   ``num_banks``, ``network_word_bits``; ``spatial_x`` / ``spatial_y`` (dimension names or roles
   -- reduction, output_channel, window, pixel -- allowed on that axis of the fanout below the
   level); ``row_dims`` (tensor -> dimension or role along its rows: a row-addressed level of
   ``block_size`` words a row, capacity counted in rows). ``macs``: ``instances`` (required),
   ``mesh_x``, ``word_bits`` (default 8), ``energy_pJ``, ``name``. `to_short_dict` writes this
   format.

A mapspace file may be applied on top of any format. Presets are format-1 files shipped in
`tvm_cosa/presets/`, plus an optional energy table per level (`<preset>.energy.yaml`).
Every malformed input raises `InputError` naming the file, the field and what is expected.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Mapping as MappingT, Optional

import yaml

from .architecture import Architecture, Arithmetic, MemoryLevel
from .errors import InputError, InputWarning
from .problem import DIMENSION_ROLES, TENSOR_NAMES, is_dimension_token

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS = ("simba", "gemmini")
FORMATS = ("'arch' (CoSA / Timeloop 0.3)", "'architecture' (Timeloop subtree or v0.4 nodes)",
           "'levels' (tvm_cosa's short format)")


# ---- entry points -------------------------------------------------------------------------
def load_architecture(arch, mapspace=None, *, name: Optional[str] = None) -> Architecture:
    """An `Architecture` from a preset name, a YAML path, or an already-parsed dict.

    `mapspace` (a path or a dict) overrides the bypass pattern of the named levels.
    """
    if isinstance(arch, Architecture):
        result = arch
    elif isinstance(arch, str) and _looks_like_preset(arch):
        result = load_preset(arch)
    else:
        result = _parse(arch, name)
    if mapspace is not None:
        source = mapspace if isinstance(mapspace, (str, Path)) else "mapspace"
        result = apply_mapspace(result, _as_dict(mapspace), source)
        result = replace(result, mapspace_missing=False)
    return result


def _looks_like_preset(text: str) -> bool:
    """A bare word that is not a file: a preset name (or a misspelt one)."""
    path = Path(text)
    return not path.exists() and path.suffix == "" and "/" not in text and "\\" not in text


def _parse(arch, name) -> Architecture:
    stem = None
    if isinstance(arch, (str, Path)):
        source, data = arch, read_yaml(arch)
        stem = Path(arch).name.split(".")[0]
    elif isinstance(arch, MappingT):
        source, data = name or "architecture", arch
    else:
        raise InputError(f"expected a preset name {list(PRESETS)}, a path to a YAML file or a "
                         f"mapping, got {type(arch).__name__}")
    if not isinstance(data, MappingT):
        raise InputError(f"expected a mapping with a top-level key {', '.join(FORMATS)}; got a "
                         f"{type(data).__name__}", source=source)
    if "levels" in data:  # the short format may name itself
        short = from_short(data, name=name, source=source)
        return short if name or "name" in data or stem is None else replace(short, name=stem)
    name = name or stem or "architecture"
    if "arch" in data:
        return replace(from_timeloop_v03(data, name=name, source=source), mapspace_missing=True)
    if "architecture" in data:
        body = data["architecture"]
        if isinstance(body, MappingT) and "nodes" in body:
            return from_timeloop_v04(data, name=name, source=source)
        return from_timeloop_tree(data, name=name, source=source)
    raise InputError(f"unrecognised architecture format (top-level keys {sorted(map(str, data))}); "
                     f"expected one of {', '.join(FORMATS)}", source=source)


def _as_dict(obj):
    if isinstance(obj, (str, Path)):
        return read_yaml(obj)
    if not isinstance(obj, MappingT):
        raise InputError(f"expected a path or a mapping, got {type(obj).__name__}")
    return obj


# ---- YAML reading -------------------------------------------------------------------------
class _TimeloopLoader(yaml.SafeLoader):
    """Safe YAML plus Timeloop 0.4's node tags (`!Component`, `!Container`, ...).

    A tagged mapping becomes a dict with the tag name under the key "!".
    """


def _construct_tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = dict(loader.construct_mapping(node, deep=True))
    elif isinstance(node, yaml.SequenceNode):
        value = {"nodes": loader.construct_sequence(node, deep=True)}
    else:
        value = {}
    value["!"] = suffix
    return value


_TimeloopLoader.add_multi_constructor("!", _construct_tagged)


def read_yaml(path):
    """Parse a YAML file; errors name the file (and the line of a syntax error)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found" if not path.exists() else "not a file", source=path)
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_TimeloopLoader)
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML: {err}", source=path) from None
    except UnicodeDecodeError:
        raise InputError("not a text file (expected YAML)", source=path) from None
    if data is None:
        raise InputError("the file is empty", source=path)
    return data


# ---- typed field access -------------------------------------------------------------------
class _Fields:
    """Typed reads from one YAML mapping; errors name the file and the field's full path.

    Keys match verbatim, as timeloop-model matches them; `timeloop_keys=True` treats '-' and '_'
    alike instead (Timeloop 0.4's front end, and our own formats). `label` ("level
    GlobalBuffer") starts every message.
    """

    def __init__(self, data, source, path, label="", *, timeloop_keys=False):
        if not isinstance(data, MappingT):
            raise InputError(f"{label + ': ' if label else ''}expected a mapping, got "
                             f"{_describe(data)}", source=source, field=path or None)
        self.data, self.source, self.path, self.label = data, source, path, label
        self.timeloop_keys = timeloop_keys
        self._keys = {self._norm(k): k for k in data}

    def _norm(self, key):
        key = str(key)
        return key.replace("-", "_") if self.timeloop_keys else key

    def key(self, *names) -> Optional[str]:
        """The key as written in the file for the first of `names` present, else None."""
        for n in names:
            if self._norm(n) in self._keys:
                return self._keys[self._norm(n)]
        return None

    def has(self, *names) -> bool:
        return self.key(*names) is not None

    def get(self, *names, default=None):
        k = self.key(*names)
        return default if k is None or self.data[k] is None else self.data[k]

    def field(self, key) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def error(self, key, message) -> InputError:
        prefix = f"{self.label}: " if self.label else ""
        return InputError(prefix + message, source=self.source, field=self.field(key))

    def require(self, *names, expected):
        k = self.key(*names)
        if k is None or self.data[k] is None:
            raise self.error(names[0], f"missing; expected {expected}")
        return self.data[k]

    def integer(self, *names, default=None, minimum=1):
        k = self.key(*names)
        if k is None or self.data[k] is None:
            return default
        value = self.data[k]
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value != int(value) or value < minimum:
            raise self.error(k, f"expected {what}, got {value!r}")
        return int(value)

    def number(self, *names, default=None, positive=True):
        k = self.key(*names)
        if k is None or self.data[k] is None:
            return default
        value = self.data[k]
        what = "a positive number" if positive else "a number >= 0"
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (value <= 0 if positive else value < 0):
            raise self.error(k, f"expected {what}, got {value!r}")
        return float(value)

    def text(self, *names, default=None):
        k = self.key(*names)
        if k is None or self.data[k] is None:
            return default
        value = self.data[k]
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.error(k, f"expected a string, got {_describe(value)}")
        return str(value).strip()

    def strings(self, *names, default=None):
        k = self.key(*names)
        if k is None:
            return default
        value = self.data[k]
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(k, f"expected a list of names, got {value!r}")
        return tuple(v.strip() for v in value)

    def tensors(self, *names, default=None):
        """A set of tensor names (Weights, Inputs, Outputs), each checked."""
        values = self.strings(*names, default=None)
        if values is None:
            return default
        unknown = [v for v in values if v not in TENSOR_NAMES]
        if unknown:
            raise self.error(self.key(*names), f"unknown tensor names {unknown}; expected some of "
                                               f"{list(TENSOR_NAMES)}")
        return frozenset(values)

    def check_known(self, known: Iterable[str]):
        known = list(known)
        norm_known = {self._norm(k) for k in known}
        for k in self.data:
            if self._norm(k) not in norm_known:
                raise self.error(k, f"unknown field; expected one of {known}")


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) \
        else type(value).__name__


def _finish(name, arithmetic, levels, *, spec, source, paths=None) -> Architecture:
    """Build the Architecture; its own checks (instances that do not divide, repeated names,
    shares) are re-raised naming the file, and the level's path in it when known."""
    try:
        return Architecture(name, arithmetic, tuple(levels), timeloop_spec=spec)
    except InputError as err:
        detail = str(err)
        if err.source is not None and detail.startswith(f"{err.source}: "):
            detail = detail[len(f"{err.source}: "):]
        if err.field is not None:
            detail = detail.replace(f"field '{err.field}': ", "", 1)
        level = re.match(r"level (\S+?):? ", detail)
        path = (paths or {}).get(level[1]) if level else None
        field = err.field if path is None or err.field is None else f"{path}.{err.field}"
        raise InputError(detail, source=source, field=field) from None


def _check_mesh(f: _Fields, key, mesh_x, instances):
    if mesh_x is not None and instances % mesh_x:
        raise f.error(key, f"{key} {mesh_x} must divide the {instances} instances "
                           "(meshY = instances / meshX)")


# ---- format 1: CoSA / Timeloop 0.3 `arch:` -----------------------------------------------
def from_timeloop_v03(data: MappingT, *, name="architecture", source=None) -> Architecture:
    """CoSA's architecture format: `arch: {arithmetic: {...}, storage: [innermost, ...]}`."""
    source = source or name
    body = _Fields(data["arch"], source, "arch")
    outer = _Fields(body.require("arithmetic", expected="{instances, word-bits, meshX}"),
                    source, "arch.arithmetic", "arithmetic")
    arith = _attributes(outer)
    _warn_unread(arith, _ARITHMETIC_ATTRIBUTES)
    instances = arith.integer("instances")
    if instances is None:
        raise arith.error("instances", "missing; expected the number of MACs")
    mesh_x = arith.integer("meshX")
    _check_mesh(arith, arith.key("meshX"), mesh_x, instances)
    arithmetic = Arithmetic(instances=instances,
                            word_bits=arith.integer(*_ARITH_WORD_BITS, default=TIMELOOP_WORD_BITS),
                            mesh_x=mesh_x, name=outer.text("name", default="__ARITH__"),
                            energy_pJ=arith.number("energy_pJ", positive=False))
    storage = body.require("storage", expected="a list of levels, innermost first")
    if not isinstance(storage, list) or not storage:
        raise body.error("storage", "expected a non-empty list of levels, innermost first")
    levels, paths = [], {}
    for n, spec in enumerate(storage):
        path = f"arch.storage[{n}]"
        entry = _Fields(spec, source, path, f"level {n}")
        lname = entry.text("name")
        if not lname:
            raise entry.error("name", "missing; expected the level's name")
        entry.label = f"level {lname}"
        paths[lname] = path
        f = _attributes(entry)
        _warn_unread(f, _STORAGE_ATTRIBUTES)
        dram = "DRAM" in entry.text("class", default="") if f is not entry else False
        if not f.has("instances"):  # this format has no ranges to count instances from
            warnings.warn(f"{source}: level {lname}: no 'instances'; assuming 1 (timeloop-model "
                          "needs it here: it stops with a floating-point exception without "
                          "it)", InputWarning, stacklevel=3)
        levels.append(_timeloop_level(f, lname, instances=f.integer("instances", default=1),
                                      mesh_x=f.integer("meshX"),
                                      technology="DRAM" if dram else None))
    return _finish(name, arithmetic, levels, spec=dict(data), source=source, paths=paths)


def _attributes(entry: _Fields) -> _Fields:
    """The fields of an `arch:` entry: its own keys, or, as timeloop-model reads a v0.2 entry
    `{name, class, attributes: {...}}`, those under `attributes`."""
    if not entry.has("attributes"):
        return entry
    return _Fields(entry.get("attributes", default={}), entry.source,
                   entry.field(entry.key("attributes")), entry.label)


# The spellings timeloop-model reads, verbatim (019f107: src/model/buffer.cpp, arithmetic.cpp).
_WORD_BITS = ("word-bits", "word_width", "datawidth")
_ARITH_WORD_BITS = ("word-bits", "datawidth")
_BLOCK = ("block-size", "block_size", "n_words")
_CLUSTER = ("cluster-size",)
_DEPTH = ("depth", "memory_depth", "data_storage_depth")
_WIDTH = ("width", "memory_width", "data_storage_width")
_PORTS = ("num-ports", "n_ports")
_BANKS = ("num-banks", "n_banks")
_ENERGY = ("vector-access-energy",)
_NETWORK_WORD_BITS = ("network-word-bits",)
_STORAGE_ATTRIBUTES = (_WORD_BITS, _BLOCK, _CLUSTER, _DEPTH, _WIDTH, _PORTS, _BANKS, _ENERGY,
                       _NETWORK_WORD_BITS, ("entries",), ("sizeKB",), ("instances",),
                       ("meshX",), ("read_bandwidth",), ("write_bandwidth",),
                       ("shared_bandwidth",), ("bandwidth",))
_ARITHMETIC_ATTRIBUTES = (_ARITH_WORD_BITS, ("instances",), ("meshX",))
TIMELOOP_WORD_BITS = 16  # Timeloop's kDefaultWordBits


def _loose(key) -> str:
    return str(key).replace("-", "_").lower()


def _warn_unread(f: _Fields, groups) -> None:
    """Warn about keys that look like a Timeloop attribute in a spelling it does not read."""
    for key in f.data:
        for group in groups:
            if key not in group and _loose(key) in {_loose(g) for g in group}:
                prefix = f"{f.source}: {f.label}" if f.label else str(f.source)
                warnings.warn(f"{prefix}: timeloop-model does not read '{key}' (it reads "
                              f"{' or '.join(repr(g) for g in group)}), so neither does "
                              f"tvm_cosa: rename it to '{group[0]}' to use it", InputWarning,
                              stacklevel=4)


def _timeloop_level(f: _Fields, lname, *, instances, mesh_x, technology=None,
                    keeps=frozenset(TENSOR_NAMES),
                    default_word_bits=TIMELOOP_WORD_BITS) -> MemoryLevel:
    """One storage level from Timeloop attributes (`entries`, or `depth` x block size, ...)."""
    _check_mesh(f, f.key("meshX") or "instances", mesh_x, instances)
    word_bits = f.integer(*_WORD_BITS, default=default_word_bits)
    technology = technology or f.text("technology", "class", default="SRAM")
    block = f.integer(*_BLOCK)
    cluster = f.integer(*_CLUSTER)
    width = f.integer(*_WIDTH)
    if width is not None:
        # Timeloop derives whichever of block size / cluster size is missing from the width.
        if block is None:
            block = width // (word_bits * (cluster or 1))
            if block < 1 or width % (word_bits * (cluster or 1)):
                raise f.error(f.key(*_WIDTH), f"width {width} bits is not a multiple of word "
                                              f"bits x cluster size ({word_bits} x {cluster or 1})")
        elif cluster is None:
            cluster = max(1, width // (word_bits * block))
    block, cluster = block or 1, cluster or 1
    if "DRAM" in technology.upper():
        entries = None
    elif f.has("entries"):
        entries = f.integer("entries", minimum=0)
    elif f.has(*_DEPTH):
        entries = f.integer(*_DEPTH, minimum=0) * block
    elif f.has("sizeKB"):
        entries = int(f.number("sizeKB") * 1024 * 8 // word_bits)
    else:
        raise f.error("entries", "no capacity; expected 'entries' (words per instance), 'depth' "
                                 "(rows of block-size words) or 'sizeKB', or 'technology: DRAM'")
    read_bw = f.number("read_bandwidth")
    write_bw = f.number("write_bandwidth")
    if f.has("bandwidth"):  # deprecated in Timeloop: read = write = bandwidth / 2
        read_bw = write_bw = f.number("bandwidth") / 2
    energy = f.number(*_ENERGY, positive=False)
    return MemoryLevel(
        name=lname, entries=entries, instances=instances, word_bits=word_bits, keeps=keeps,
        mesh_x=mesh_x, block_size=block, cluster_size=cluster,
        read_bandwidth=read_bw, write_bandwidth=write_bw,
        shared_bandwidth=f.number("shared_bandwidth"),
        technology=technology,
        num_ports=f.integer(*_PORTS, default=2),
        num_banks=f.integer(*_BANKS, default=2),
        network_word_bits=f.integer(*_NETWORK_WORD_BITS),
        read_energy_pJ=energy, write_energy_pJ=energy,
    )


# ---- format 2: Timeloop hierarchical `architecture: {subtree: ...}` ------------------------
_RANGE = re.compile(r"^(?P<base>.*?)\s*\[\s*(?P<lo>-?\d+)\s*\.\.\s*(?P<hi>-?\d+)\s*\]$")
_COMPUTE_CLASSES = ("compute", "mac", "intmac", "fpmac", "int_mac", "fp_mac")
_NETWORK_WORDS = ("noc", "network", "legacy", "reductiontree", "multicast", "router", "wire")
_STORAGE_WORDS = ("dram", "sram", "regfile", "buffer", "storage", "buffet", "cache", "register",
                  "scratchpad", "rf")


def _split_range(name, f: _Fields, key="name"):
    """`PE[0..15]` -> ("PE", 16); `DRAM` -> ("DRAM", 1)."""
    match = _RANGE.match(str(name))
    if not match:
        if "[" in str(name):
            raise f.error(key, f"malformed instance range in {name!r}; expected NAME[lo..hi]")
        return str(name).strip(), 1
    lo, hi = int(match["lo"]), int(match["hi"])
    if lo < 0 or hi < lo:
        raise f.error(key, f"instance range in {name!r} is empty; expected NAME[lo..hi] with "
                           "0 <= lo <= hi")
    return match["base"], hi - lo + 1


def _component_kind(f: _Fields) -> str:
    """'storage', 'compute' or 'network' from a component's class / subclass."""
    classes = [c.lower() for c in (f.text("class"), f.text("subclass")) if c]
    if not classes:
        raise f.error("class", "missing; expected a storage class (DRAM, SRAM, regfile, "
                               "smartbuffer_*, storage), a compute class (mac, intmac, compute) "
                               "or a network class (XY_NoC)")
    for c in classes:  # the most specific mention wins: subclass after class
        if c in _COMPUTE_CLASSES or c.endswith("mac") or "compute" in c:
            return "compute"
    for c in classes:
        if any(w in c for w in _NETWORK_WORDS):
            return "network"
    for c in classes:
        if any(w in c for w in _STORAGE_WORDS):
            return "storage"
    raise f.error(f.key("class") or "subclass",
                  f"unknown component class {'/'.join(classes)!r}; expected a storage class "
                  "(DRAM, SRAM, regfile, smartbuffer_*, storage), a compute class (mac, intmac, "
                  "fpmac, compute) or a network class (XY_NoC, ...)")


# timeloop-model's component classes (include/model/topology.hpp): a class *containing* one of
# these names, case-sensitive, tested in this order; any other component is ignored.
_TIMELOOP_CLASSES = (("storage", ("DRAM", "SRAM", "regfile", "smartbuffer", "storage")),
                     ("compute", ("mac", "intmac", "fpmac", "compute")),
                     ("network", ("XY_NoC", "Legacy", "ReductionTree", "SimpleMulticast")))


def _timeloop_kind(f: _Fields) -> Optional[str]:
    """'storage', 'compute', 'network' or None (ignored) from the class, as timeloop-model."""
    cls = f.text("class", default="")
    for kind, names in _TIMELOOP_CLASSES:
        if any(n in cls for n in names):
            return kind
    return None


def _technology(f: _Fields) -> str:
    """DRAM, regfile or SRAM from the class names (Timeloop's technology names)."""
    classes = " ".join(c.lower() for c in (f.text("class"), f.text("subclass")) if c)
    if "dram" in classes:
        return "DRAM"
    return "regfile" if "regfile" in classes or classes.endswith("_rf") else "SRAM"


def from_timeloop_tree(data: MappingT, *, name="architecture", source=None) -> Architecture:
    """Timeloop's `architecture: {version, subtree: [...]}` (outermost first, ranges multiply)."""
    source = source or name
    body = _Fields(data["architecture"], source, "architecture")
    subtree = body.require("subtree", expected="a list with one top-level subtree "
                                               "(name, local, subtree)")
    outer_first, compute = [], []
    _walk_subtree(subtree, source, "architecture.subtree", 1, outer_first, compute)
    arithmetic = _single_compute(compute, source, "architecture.subtree")
    if not outer_first:
        raise InputError("no storage component (class DRAM, SRAM, regfile, smartbuffer_*, "
                         "storage) anywhere in the tree", source=source, field="architecture")
    levels = [lv for lv, _ in reversed(outer_first)]
    paths = {lv.name: path for lv, path in outer_first}
    return _finish(name, arithmetic, levels, spec=dict(data), source=source, paths=paths)


def _walk_subtree(subtree, source, path, multiplier, out, compute):
    if not isinstance(subtree, list):
        raise InputError("expected a list of subtrees", source=source, field=path)
    if len(subtree) > 1:
        raise InputError(f"{len(subtree)} sibling subtrees; expected one per level (a linear "
                         "memory hierarchy)", source=source, field=path)
    for n, node in enumerate(subtree):
        npath = f"{path}[{n}]"
        f = _Fields(node, source, npath)
        base, count = _split_range(f.require("name", expected="the subtree's name"), f)
        f.label = f"subtree {base}"
        attrs = _Fields(f.get("attributes", default={}), source, f"{npath}.attributes", f.label)
        passed = [k for k in attrs.data
                  if any(_loose(k) in {_loose(g) for g in group} for group in _STORAGE_ATTRIBUTES)]
        if passed:
            warnings.warn(f"{source}: {f.label}: timeloop-model does not pass a subtree's "
                          f"attributes to its components (Accelergy does), so neither does "
                          f"tvm_cosa: {passed} there set nothing; set them on each component",
                          InputWarning, stacklevel=3)
        mult = multiplier * count
        local = f.get("local", default=[])
        if not isinstance(local, list):
            raise f.error(f.key("local"), "expected a list of components")
        for m, comp in enumerate(local):
            _tree_component(comp, source, f"{npath}.local[{m}]", mult, out, compute)
        if f.has("subtree"):
            _walk_subtree(f.get("subtree"), source, f"{npath}.subtree", mult, out, compute)


def _tree_component(comp, source, path, multiplier, out, compute):
    f = _Fields(comp, source, path)
    base, count = _split_range(f.require("name", expected="the component's name"), f)
    f.label = f"component {base}"
    kind = _timeloop_kind(f)
    if kind is None:
        warnings.warn(f"{source}: {f.label}: timeloop-model ignores a component of class "
                      f"{f.text('class', default='(none)')!r} (storage: DRAM, SRAM, regfile, "
                      "smartbuffer*, *storage; compute: *mac, compute; network: XY_NoC, ...), so "
                      "tvm_cosa does too", InputWarning, stacklevel=4)
        return
    attrs = _Fields(f.get("attributes", default={}), source, f"{path}.attributes", f.label)
    _warn_unread(attrs, _ARITHMETIC_ATTRIBUTES if kind == "compute" else _STORAGE_ATTRIBUTES)
    instances = multiplier * count
    given = attrs.integer("instances")
    if given is not None and given != instances and instances != 1:
        raise attrs.error("instances", f"{given} disagrees with the {instances} instances of the "
                                       "[lo..hi] ranges on the path to this component")
    instances = given or instances
    mesh_x = attrs.integer("meshX")
    if kind == "network":
        return
    if kind == "compute":
        _check_mesh(attrs, attrs.key("meshX") or "instances", mesh_x, instances)
        compute.append(Arithmetic(instances=instances,
                                  word_bits=attrs.integer(*_ARITH_WORD_BITS,
                                                          default=TIMELOOP_WORD_BITS),
                                  mesh_x=mesh_x, name=base))
        return
    # timeloop-model makes the compute component level 0 wherever it is listed
    technology = _technology(f)  # a label: only DRAM changes the model
    if "DRAM" in f.text("class", default="") or attrs.get("technology") == "DRAM":
        technology = "DRAM"
    elif technology == "DRAM":  # Timeloop's test is case-sensitive
        technology = "SRAM"
    out.append((_timeloop_level(attrs, base, instances=instances, mesh_x=mesh_x,
                                technology=technology), path))


def _single_compute(compute, source, field) -> Arithmetic:
    if len(compute) != 1:
        raise InputError(f"found {len(compute)} compute components; expected exactly one (class "
                         "mac / intmac / compute, the innermost component)", source=source,
                         field=field)
    return compute[0]


# ---- format 3: Timeloop v0.4 `architecture: {nodes: ...}` ---------------------------------
def from_timeloop_v04(data: MappingT, *, name="architecture", source=None) -> Architecture:
    """Timeloop 0.4's node list (outermost first). `timeloop_spec` stays None: Timeloop reads
    this format only through timeloopfe, so the Timeloop writer emits its own file."""
    source = source or name
    body = _Fields(data["architecture"], source, "architecture", timeloop_keys=True)
    nodes = body.require("nodes", expected="a list of !Container / !Component nodes")
    components = list(_flatten_nodes(nodes, source, "architecture.nodes"))
    if not components:
        raise body.error("nodes", "no !Component; expected storage levels and a compute leaf")
    *storage, (leaf_f, leaf_base, leaf_mesh, leaf_attrs) = components
    if _component_kind_or_none(leaf_f) not in (None, "compute"):
        raise leaf_f.error("class", "the last component must be the compute element (class "
                                    "mac / intmac / compute)")
    (mx, my) = leaf_mesh
    arithmetic = Arithmetic(instances=mx * my, word_bits=leaf_attrs.integer(*_WORD_BITS, default=8),
                            mesh_x=mx, name=leaf_base)
    levels, paths = [], {}
    for f, base, (mx, my), attrs in storage:
        kind = _component_kind(f)
        if kind == "network":
            continue
        if kind == "compute":
            raise f.error("class", "a compute component above storage; expected the compute "
                                   "element as the last component")
        keeps = _node_keeps(f)
        paths[base] = f.path
        levels.append(_timeloop_level(attrs, base, instances=mx * my, mesh_x=mx,
                                      technology=_technology(f), keeps=keeps,
                                      default_word_bits=8))
    if not levels:
        raise body.error("nodes", "no storage component; expected at least a DRAM level")
    return _finish(name, arithmetic, levels[::-1], spec=None, source=source, paths=paths)


def _component_kind_or_none(f: _Fields):
    return _component_kind(f) if (f.has("class") or f.has("subclass")) else None


def _flatten_nodes(nodes, source, path, mesh=(1, 1), inherited=None):
    """Yield (fields, name, (meshX, meshY) so far, attributes) of each !Component, outer first."""
    inherited = dict(inherited or {})
    if not isinstance(nodes, list):
        raise InputError("expected a list of nodes", source=source, field=path)
    for n, node in enumerate(nodes):
        npath = f"{path}[{n}]"
        f = _Fields(node, source, npath, timeloop_keys=True)
        tag = node.get("!", "Component" if f.has("class", "subclass") else None)
        if tag is None:
            raise f.error("!", "untagged node; expected !Container, !Component, !Parallel or "
                               "!Nothing")
        if tag == "Nothing":
            continue
        if tag == "Parallel":
            # Side-by-side buffers become consecutive levels, the first listed outermost.
            inner = list(_flatten_nodes(f.get("nodes", default=[]), source, f"{npath}.nodes",
                                        mesh, inherited))
            yield from inner
            continue
        if tag not in ("Container", "Component", "Hierarchical"):
            raise f.error("!", f"unknown node tag !{tag}; expected !Container, !Component, "
                               "!Parallel or !Nothing")
        base = f.text("name") or ""
        f.label = f"{tag.lower()} {base or n}"
        spatial = _Fields(f.get("spatial", default={}), source, f"{npath}.spatial", f.label,
                          timeloop_keys=True)
        mesh = (mesh[0] * spatial.integer("meshX", default=1),
                mesh[1] * spatial.integer("meshY", default=1))
        attrs_raw = f.get("attributes", default={})
        if not isinstance(attrs_raw, MappingT):
            raise f.error(f.key("attributes"), f"expected a mapping, got {_describe(attrs_raw)}")
        if tag == "Container" or tag == "Hierarchical":
            inherited.update({k.replace("-", "_"): v for k, v in attrs_raw.items()})
            if tag == "Hierarchical":
                yield from _flatten_nodes(f.get("nodes", default=[]), source, f"{npath}.nodes",
                                          mesh, inherited)
            continue
        if not base:
            raise f.error("name", "missing; expected the component's name")
        attrs = _Fields({**inherited, **attrs_raw}, source, f"{npath}.attributes", f.label,
                        timeloop_keys=True)
        yield f, base, mesh, attrs


def _node_keeps(f: _Fields) -> frozenset:
    constraints = _Fields(f.get("constraints", default={}), f.source, f.field("constraints"),
                          f.label, timeloop_keys=True)
    dataspace = _Fields(constraints.get("dataspace", default={}), f.source,
                        constraints.field("dataspace"), f.label, timeloop_keys=True)
    keep_only = dataspace.tensors("keep_only")
    if keep_only is not None:
        return keep_only
    kept = set(TENSOR_NAMES) - set(dataspace.tensors("bypass", default=frozenset()))
    keep = dataspace.tensors("keep")
    if keep is not None:
        kept |= keep
        both = keep & (dataspace.tensors("bypass", default=frozenset()))
        if both:
            raise dataspace.error("keep", f"{sorted(both)} both kept and bypassed")
    return frozenset(kept)


# ---- format 4: the short format ------------------------------------------------------------
_LEVEL_FIELDS = ("name", "entries", "instances", "mesh_x", "word_bits", "keeps", "bypass",
                 "shares", "block_size", "cluster_size", "read_bandwidth", "write_bandwidth",
                 "shared_bandwidth", "read_energy_pJ", "write_energy_pJ", "technology",
                 "num_ports", "num_banks", "network_word_bits", "spatial_x", "spatial_y",
                 "row_dims")
_MAC_FIELDS = ("instances", "mesh_x", "word_bits", "energy_pJ", "name")


def from_short(data: MappingT, *, name=None, source=None) -> Architecture:
    """tvm_cosa's short format (see the module docstring)."""
    source = source or name or "architecture"
    top = _Fields(data, source, "")
    top.check_known(("name", "macs", "levels"))
    name = name or top.text("name") or "architecture"
    macs = _Fields(top.require("macs", expected="{instances, mesh_x, word_bits}"), source, "macs",
                   "macs")
    macs.check_known(_MAC_FIELDS)
    instances = macs.integer("instances")
    if instances is None:
        raise macs.error("instances", "missing; expected the number of MACs")
    mesh_x = macs.integer("mesh_x")
    _check_mesh(macs, "mesh_x", mesh_x, instances)
    arithmetic = Arithmetic(instances=instances, word_bits=macs.integer("word_bits", default=8),
                            mesh_x=mesh_x, energy_pJ=macs.number("energy_pJ", positive=False),
                            name=macs.text("name", default="__ARITH__"))
    specs = top.require("levels", expected="a list of levels, innermost first")
    if not isinstance(specs, list) or not specs:
        raise top.error("levels", "expected a non-empty list of levels, innermost first")
    levels = [_short_level(spec, source, f"levels[{n}]", n == len(specs) - 1,
                           arithmetic.word_bits)
              for n, spec in enumerate(specs)]
    paths = {lv.name: f"levels[{n}]" for n, lv in enumerate(levels)}
    return _finish(name, arithmetic, levels, spec=None, source=source, paths=paths)


def _short_level(spec, source, path, outermost, default_word_bits) -> MemoryLevel:
    f = _Fields(spec, source, path)
    lname = f.text("name")
    if not lname:
        raise f.error("name", "missing; expected the level's name")
    f.label = f"level {lname}"
    f.check_known(_LEVEL_FIELDS)
    technology = f.text("technology")
    if f.has("entries"):
        entries = f.integer("entries", minimum=0)
    elif outermost or (technology or "").upper() == "DRAM":
        entries = None
    else:
        raise f.error("entries", "missing; expected words per instance (only the outermost level "
                                 "may omit it: it is then an unbounded DRAM)")
    technology = technology or ("DRAM" if entries is None else "SRAM")
    instances = f.integer("instances", default=1)
    mesh_x = f.integer("mesh_x")
    _check_mesh(f, "mesh_x", mesh_x, instances)
    if f.has("keeps") and f.has("bypass"):
        raise f.error("bypass", "give either 'keeps' or 'bypass', not both")
    keeps = f.tensors("keeps")
    if keeps is None:
        keeps = frozenset(TENSOR_NAMES) - f.tensors("bypass", default=frozenset())
    return MemoryLevel(
        name=lname, entries=entries, instances=instances,
        word_bits=f.integer("word_bits", default=default_word_bits), keeps=keeps,
        shares=_shares(f, keeps), mesh_x=mesh_x,
        block_size=f.integer("block_size", default=1),
        cluster_size=f.integer("cluster_size", default=1),
        read_bandwidth=f.number("read_bandwidth"), write_bandwidth=f.number("write_bandwidth"),
        shared_bandwidth=f.number("shared_bandwidth"), technology=technology,
        num_ports=f.integer("num_ports", default=2), num_banks=f.integer("num_banks", default=2),
        network_word_bits=f.integer("network_word_bits"),
        read_energy_pJ=f.number("read_energy_pJ", positive=False),
        write_energy_pJ=f.number("write_energy_pJ", positive=False),
        spatial_dims_x=_dimension_tokens(f, "spatial_x"),
        spatial_dims_y=_dimension_tokens(f, "spatial_y"),
        row_dims=_row_dims(f, keeps),
    )


def _dimension_tokens(f: _Fields, key: str):
    """`spatial_x` / `spatial_y`: dimension letters or roles; a typo is an error, not a silently
    empty constraint."""
    tokens = f.strings(key)
    for token in tokens or ():
        if not is_dimension_token(token):
            raise f.error(key, f"unknown dimension or role {token!r}; expected dimension letters "
                               f"(C, K, P, ...) or roles ({', '.join(DIMENSION_ROLES)})")
    return tokens


def _row_dims(f: _Fields, keeps) -> tuple:
    """`row_dims: {tensor: dimension or role}`: a row-addressed level (block_size words a row)."""
    if not f.has("row_dims"):
        return ()
    rows = _Fields(f.get("row_dims", default={}), f.source, f.field("row_dims"), f.label)
    for t in rows.data:
        if t not in keeps:
            raise rows.error(t, f"a row dimension for {t}, which the level does not keep "
                                f"(keeps {sorted(keeps)})")
        if not is_dimension_token(rows.text(t)):
            raise rows.error(t, f"unknown dimension or role {rows.text(t)!r}; expected a "
                                f"dimension letter or a role ({', '.join(DIMENSION_ROLES)})")
    return tuple(sorted((t, rows.text(t)) for t in rows.data))


def _shares(f: _Fields, keeps) -> tuple:
    if not f.has("shares"):
        return ()
    shares = _Fields(f.get("shares", default={}), f.source, f.field("shares"), f.label)
    out = {}
    for t in shares.data:
        if t not in TENSOR_NAMES:
            raise shares.error(t, f"unknown tensor; expected some of {list(TENSOR_NAMES)}")
        if t not in keeps:
            raise shares.error(t, f"a share for {t}, which the level does not keep "
                                  f"(keeps {sorted(keeps)})")
        ratio = shares.number(t)
        if ratio > 1:
            raise shares.error(t, f"expected a fraction in (0, 1], got {ratio}")
        out[t] = ratio
    return tuple(sorted(out.items()))


def to_short_dict(arch: Architecture) -> dict:
    """The short format of `arch` (every field that differs from the loader's default)."""
    a = arch.arithmetic
    macs = {"instances": a.instances, "word_bits": a.word_bits}
    macs.update({k: v for k, v in (("mesh_x", a.mesh_x), ("energy_pJ", a.energy_pJ))
                 if v is not None})
    if a.name != "__ARITH__":
        macs["name"] = a.name
    levels = []
    for lv in arch.levels:
        spec = {"name": lv.name, "entries": lv.entries, "instances": lv.instances,
                "word_bits": lv.word_bits, "keeps": sorted(lv.keeps),
                "technology": lv.technology, "block_size": lv.block_size,
                "cluster_size": lv.cluster_size, "num_ports": lv.num_ports,
                "num_banks": lv.num_banks}
        if lv.entries is None:
            del spec["entries"]
        optional = (("mesh_x", lv.mesh_x), ("read_bandwidth", lv.read_bandwidth),
                    ("write_bandwidth", lv.write_bandwidth),
                    ("shared_bandwidth", lv.shared_bandwidth),
                    ("network_word_bits", lv.network_word_bits),
                    ("read_energy_pJ", lv.read_energy_pJ), ("write_energy_pJ", lv.write_energy_pJ),
                    ("shares", dict(lv.shares) or None),
                    ("row_dims", dict(lv.row_dims) or None),
                    ("spatial_x", None if lv.spatial_dims_x is None else list(lv.spatial_dims_x)),
                    ("spatial_y", None if lv.spatial_dims_y is None else list(lv.spatial_dims_y)))
        spec.update({k: v for k, v in optional if v is not None})
        levels.append(spec)
    return {"name": arch.name, "macs": macs, "levels": levels}


# ---- mapspace, energies, presets -----------------------------------------------------------
def _mapspace_constraints(data, source):
    """The constraint list of any Timeloop mapspace / constraints layout."""
    if not isinstance(data, MappingT):
        raise InputError(f"expected a mapping such as 'mapspace: {{constraints: [...]}}', got "
                         f"{_describe(data)}", source=source)
    for outer, inner in (("mapspace", "constraints"), ("mapspace_constraints", "targets"),
                         ("architecture_constraints", "targets"), ("constraints", "targets")):
        if outer not in data:
            continue
        body = data[outer]
        if isinstance(body, list):
            return body, outer
        if isinstance(body, MappingT):
            for key in (inner, "constraints", "targets"):
                if isinstance(body.get(key), list):
                    return body[key], f"{outer}.{key}"
        raise InputError(f"expected a list of constraints under '{outer}'", source=source,
                         field=outer)
    raise InputError(f"no constraints (top-level keys {sorted(map(str, data))}); expected "
                     "'mapspace: {constraints: [{target, type: bypass, keep, bypass}]}'",
                     source=source, field="mapspace.constraints")


def apply_mapspace(arch: Architecture, data: MappingT, source=None) -> Architecture:
    """Set each level's kept tensors from a mapspace's bypass (`datatype`) constraints.

    Other constraint types (temporal, spatial, utilization) do not change the architecture and
    are skipped; a target that names no level is an error.
    """
    source = source or "mapspace"
    constraints, path = _mapspace_constraints(data, source)
    keeps = {}
    for n, c in enumerate(constraints):
        f = _Fields(c, source, f"{path}[{n}]", timeloop_keys=True)
        ctype = f.text("type")
        if ctype is None:
            raise f.error("type", "missing; expected bypass / datatype, temporal, spatial or "
                                  "utilization")
        if ctype not in ("datatype", "bypass", "dataspace"):
            continue
        target = f.text("target")
        if target is None:
            raise f.error("target", "missing; expected a level name")
        if target not in arch.level_names:
            raise f.error("target", f"no level named {target!r} in {arch.name}; levels are "
                                    f"{list(arch.level_names)}")
        f.label = f"level {target}"
        bypass = f.tensors("bypass", default=frozenset())
        keep = f.tensors("keep")
        if keep is not None and keep & bypass:
            raise f.error("keep", f"{sorted(keep & bypass)} both kept and bypassed")
        keeps[target] = keep if keep is not None else frozenset(TENSOR_NAMES) - bypass
    spec = arch.timeloop_spec
    return replace(arch.with_bypass(keeps), timeloop_spec=spec)


def apply_energy_table(arch: Architecture, table: MappingT, source=None) -> Architecture:
    """Per-level energies `{level: {read: pJ, write: pJ}, arithmetic: pJ}` (per vector access)."""
    source = source or f"energy table of {arch.name}"
    t = _Fields(table, source, "")
    levels = list(arch.levels)
    for key in t.data:
        if key != "arithmetic" and key not in arch.level_names:
            raise t.error(key, f"no level named {key!r} in {arch.name}; expected 'arithmetic' or "
                               f"one of {list(arch.level_names)}")
    for i, lv in enumerate(levels):
        if lv.name not in t.data:
            continue
        entry = _Fields(t.data[lv.name], source, lv.name, f"level {lv.name}")
        read = entry.number("read", positive=False)
        if read is None:
            raise entry.error("read", "missing; expected pJ per vector read")
        levels[i] = replace(lv, read_energy_pJ=read,
                            write_energy_pJ=entry.number("write", default=read, positive=False))
    arithmetic = arch.arithmetic
    if "arithmetic" in t.data:
        arithmetic = replace(arithmetic, energy_pJ=t.number("arithmetic", positive=False))
    return replace(arch, arithmetic=arithmetic, levels=tuple(levels))


def load_preset(name: str) -> Architecture:
    if name not in PRESETS:
        raise InputError(f"unknown architecture preset {name!r}; expected one of {list(PRESETS)} "
                         "or a path to an architecture YAML file", field="arch")
    arch = load_architecture(PRESET_DIR / f"{name}.arch.yaml",
                             PRESET_DIR / f"{name}.mapspace.yaml", name=name)
    energy = PRESET_DIR / f"{name}.energy.yaml"
    if energy.exists():
        arch = apply_energy_table(arch, read_yaml(energy), energy)
    if name == "gemmini":
        # Weight-stationary array on row-addressed memories (what GemminiConfig builds).
        from .target.gemmini.config import with_array_layout

        arch = with_array_layout(arch, "WS")
    return arch
