"""Random architectures, layers and mappings in Timeloop's own file formats, for checking the
scheduler and the built-in cost model against real timeloop-model (`bench/fuzz_timeloop.py`,
`tests/test_fuzz_timeloop.py`).

- `random_arch_files(rng)`: an architecture as Timeloop 019f107 reads it: the old (v0.3)
  `arch: {arithmetic, storage}` list plus a mapspace with the bypass pattern, or the same
  machine in the hierarchical `architecture: {version: 0.3, subtree: ...}` format (Timeloop
  019f107 does not read the v0.4 `nodes` list). 2 to 5 on-chip levels above the MACs and a
  DRAM, 2-D meshes (`meshX`), random bypass, block sizes, bandwidths, word bits, clusters.
- `random_layer(rng)`: a convolution with prime and awkward sizes, strides 1-4, dilations 1-3,
  batch 1-4 (or a matmul).
- `random_mapping(problem, arch, rng)`: a random valid (per `check_mapping`) and writable map:
  every prime factor in a random temporal or spatial slot, random loop orders.
- `compare(builtin, timeloop)`: the field-by-field differences of two `Evaluation`s.

Everything is a pure function of the `random.Random` it is given, so a case is its seed.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import Optional

from ..mapping import LevelMapping, Mapping
from ..problem import TENSOR_NAMES, Problem, prime_factors

# Compared per level and tensor (the list), and the global numbers.
COUNT_FIELDS = ("utilized_capacity", "reads", "fills", "updates")
ENERGY_REL = 1e-6
# Timeloop prints each per-tensor energy with 2 decimals; the parsed total carries that rounding.
ENERGY_PRINT_ROUNDING_PJ = 0.005

_AWKWARD_CHANNELS = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 16, 17, 24, 32, 48, 64)
_AWKWARD_WIDTHS = (1, 2, 3, 4, 5, 6, 7, 9, 10, 13, 14, 15, 28)
_FILTERS = (1, 1, 2, 3, 3, 5, 7)
_FANOUT_X = (2, 2, 3, 4, 4, 8, 16)
_FANOUT_Y = (1, 1, 1, 2, 3, 4)
_BLOCKS = (1, 1, 1, 2, 4, 8)
MAX_MACS = 1024


@dataclass
class ArchFiles:
    """One random machine: the Timeloop documents and what they describe."""

    arch: dict  # the architecture document (v0.3 `arch:` or the tree `architecture:`)
    mapspace: dict  # the bypass constraints (`mapspace: {constraints: [...]}`)
    fmt: str  # "v0.3" | "tree"


def _fanouts(rng, levels):
    """(X, Y) fanout below each level, outermost first, at most MAX_MACS MACs in total."""
    while True:
        out, total = [], 1
        for _ in range(levels):
            if rng.random() < 0.45:
                out.append((1, 1))
                continue
            fx, fy = rng.choice(_FANOUT_X), rng.choice(_FANOUT_Y)
            if rng.random() < 0.2:
                fx, fy = fy, fx
            out.append((fx, fy))
            total *= fx * fy
        if 1 < total <= MAX_MACS:
            return out


def random_arch_files(rng: random.Random, fmt: Optional[str] = None) -> ArchFiles:
    """A random architecture in Timeloop's v0.3 (`arch:` + mapspace) or tree format."""
    fmt = fmt or rng.choice(("v0.3", "v0.3", "tree"))
    onchip = rng.randint(2, 5)
    word_bits = rng.choice((8, 8, 16))
    # Fanouts below DRAM and each on-chip level, outermost first.
    fanouts = _fanouts(rng, onchip + 1)
    names = [f"L{k}" for k in range(onchip)] + ["DRAM"]  # innermost first
    mesh_x = mesh_y = 1
    meshes = []  # per level, outermost first: its own mesh
    for fx, fy in fanouts:
        meshes.append((mesh_x, mesh_y))
        mesh_x, mesh_y = mesh_x * fx, mesh_y * fy
    mac_mesh = (mesh_x, mesh_y)
    meshes = meshes[::-1]  # innermost first, like `names`

    levels = []
    capacity = rng.choice((1, 2, 4, 8, 16))  # innermost entries, growing outwards
    tensors = list(TENSOR_NAMES)
    keeps = {}
    for k, name in enumerate(names):
        (mx, my) = meshes[k]
        spec = {"name": name}
        if name == "DRAM":
            spec.update({"technology": "DRAM", "instances": 1, "word-bits": word_bits,
                         "block-size": rng.choice((4, 8, 16, 64))})
            bw = rng.choice((None, 2, 4, 8, 16, 32))
            if bw is not None:
                if rng.random() < 0.5:
                    spec["bandwidth"] = float(bw)
                else:
                    spec["read_bandwidth"] = float(bw)
                    spec["write_bandwidth"] = float(rng.choice((bw, 2 * bw, max(1, bw // 2))))
        else:
            block = rng.choice(_BLOCKS)
            if k == 0 and rng.random() < 0.4:
                block = 1
            capacity = max(capacity, block) * rng.choice((1, 2, 4, 8, 16, 32))
            if k == onchip - 1:
                capacity = max(capacity, 2048) * rng.choice((1, 4, 16))
            entries = capacity // block * block
            bits = word_bits if rng.random() < 0.8 else rng.choice((8, 16, 24))
            spec.update({"entries": entries, "instances": mx * my, "word-bits": bits,
                         "block-size": block})
            if rng.random() < 0.15 and mx * my > 1:
                spec["cluster-size"] = rng.choice([c for c in (2, 4, 8) if (mx * my) % c == 0]
                                                  or [1])
            if rng.random() < 0.3:
                spec["read_bandwidth"] = float(rng.choice((1, 2, 4, 8, 16)))
                spec["write_bandwidth"] = float(rng.choice((1, 2, 4, 8, 16)))
            spec["num-ports"] = rng.choice((1, 2))
            spec["num-banks"] = rng.choice((1, 2, 4, 8))
            chosen = [t for t in tensors if rng.random() < 0.55] or [rng.choice(tensors)]
            keeps[name] = chosen
        if my > 1 or (mx > 1 and rng.random() < 0.5):
            spec["meshX"] = mx
        levels.append(spec)
    arithmetic = {"name": "MAC", "instances": mac_mesh[0] * mac_mesh[1], "word-bits": word_bits}
    if mac_mesh[1] > 1 or (mac_mesh[0] > 1 and rng.random() < 0.5):
        arithmetic["meshX"] = mac_mesh[0]
    mapspace = {"mapspace": {"constraints": [
        {"target": name, "type": "datatype", "keep": keep,
         "bypass": [t for t in tensors if t not in keep]} for name, keep in keeps.items()]}}
    if fmt == "tree":
        return ArchFiles(_tree(arithmetic, levels), mapspace, "tree")
    return ArchFiles({"arch": {"arithmetic": arithmetic, "storage": levels}}, mapspace, "v0.3")


def _tree(arithmetic, levels) -> dict:
    """The same machine in Timeloop's hierarchical format: one `local` list, outermost first,
    `name[0..n-1]` for replicated components."""
    def component(spec, cls):
        attrs = {k: v for k, v in spec.items() if k not in ("name", "technology", "instances")}
        n = spec.get("instances", 1)
        return {"name": spec["name"] if n == 1 else f"{spec['name']}[0..{n - 1}]",
                "class": cls, "attributes": attrs}

    local = [component(s, "DRAM" if s.get("technology") == "DRAM" else "SRAM")
             for s in reversed(levels)]
    local.append(component(arithmetic, "intmac"))
    return {"architecture": {"version": 0.3, "subtree": [{"name": "system", "local": local}]}}


def random_layer(rng: random.Random) -> Problem:
    """A convolution (sometimes a matmul) with awkward sizes, strides 1-4, dilations 1-3."""
    if rng.random() < 0.15:
        return Problem.matmul(M=rng.choice(_AWKWARD_WIDTHS) * rng.choice((1, 2, 7)),
                              N=rng.choice(_AWKWARD_CHANNELS), K=rng.choice(_AWKWARD_CHANNELS),
                              batch=rng.choice((1, 1, 2, 3)), name="mm")
    stride = (rng.choice((1, 1, 2, 3, 4)), rng.choice((1, 1, 2, 3, 4)))
    dilation = (rng.choice((1, 1, 1, 2, 3)), rng.choice((1, 1, 1, 2, 3)))
    return Problem.conv2d(N=rng.choice((1, 1, 2, 3, 4)), K=rng.choice(_AWKWARD_CHANNELS),
                          C=rng.choice(_AWKWARD_CHANNELS), P=rng.choice(_AWKWARD_WIDTHS),
                          Q=rng.choice(_AWKWARD_WIDTHS), R=rng.choice(_FILTERS),
                          S=rng.choice(_FILTERS), stride=stride, dilation=dilation, name="conv")


def random_mapping(problem: Problem, arch, rng: random.Random, *, tries: int = 40):
    """A random mapping that passes `check_mapping` (None if no draw did): each prime factor in
    a random slot (temporal at a level, or spatial on an axis of a fanout with room left, one
    axis per dimension and level), outer levels more likely, random loop orders."""
    from ..validity import check_mapping

    dims = list(problem.dims)
    primes = [(d, p) for d in dims for p in prime_factors(problem.size[d])]
    L = arch.num_levels
    for attempt in range(tries):
        # Later attempts push factors outwards (small inner tiles fit more often).
        bias = 1.0 + attempt / 4.0
        levels = [LevelMapping() for _ in range(L)]
        room = {i: list(arch.fanout(i)) for i in range(L)}
        axis_of = {}
        rng.shuffle(primes)
        for d, p in primes:
            slots = [("T", i) for i in range(L)]
            for i in range(L):
                for a, axis in enumerate("XY"):
                    if room[i][a] % p == 0 and axis_of.get((d, i), axis) == axis:
                        slots.append((axis, i))
            weights = [(1 + s[1]) ** bias * (2.0 if s[0] != "T" else 1.0) for s in slots]
            kind, i = rng.choices(slots, weights)[0]
            target = {"T": levels[i].temporal, "X": levels[i].spatial_x,
                      "Y": levels[i].spatial_y}[kind]
            target[d] = target.get(d, 1) * p
            if kind != "T":
                a = "XY".index(kind)
                room[i][a] //= p
                axis_of[(d, i)] = kind
        for lv in levels:
            order = dims[:]
            rng.shuffle(order)
            lv.order = tuple(order)
        mapping = Mapping(levels)
        if not check_mapping(mapping, problem, arch):
            return mapping
    return None


def compare(builtin, timeloop) -> list[str]:
    """Every difference between the built-in model's and Timeloop's evaluation of one map:
    per level and tensor the counts in COUNT_FIELDS, then cycles and energy."""
    out = []
    if builtin.valid != timeloop.valid:
        return [f"valid: builtin {builtin.valid} ({builtin.error}), timeloop {timeloop.valid} "
                f"({timeloop.error})"]
    if not builtin.valid:
        return []
    tl_levels = {lv.name: lv for lv in timeloop.levels}
    for lv in builtin.levels:
        other = tl_levels.get(lv.name)
        if other is None:
            out.append(f"level {lv.name}: missing in Timeloop's stats")
            continue
        if set(lv.tensors) != set(other.tensors):
            out.append(f"level {lv.name}: tensors {sorted(lv.tensors)} vs Timeloop "
                       f"{sorted(other.tensors)}")
        for t in sorted(set(lv.tensors) & set(other.tensors)):
            for f in COUNT_FIELDS:
                a, b = getattr(lv.tensors[t], f), getattr(other.tensors[t], f)
                if a != b:
                    out.append(f"{lv.name} {t} {f}: builtin {a}, timeloop {b}")
    if builtin.cycles != timeloop.cycles:
        out.append(f"cycles: builtin {builtin.cycles}, timeloop {timeloop.cycles}")
    tol = energy_tolerance(timeloop)
    if abs(builtin.energy_pJ - timeloop.energy_pJ) > tol:
        out.append(f"energy: builtin {builtin.energy_pJ:.4f}, timeloop {timeloop.energy_pJ:.4f} "
                   f"pJ (relative {abs(builtin.energy_pJ / timeloop.energy_pJ - 1):.2e})")
    return out


def energy_tolerance(timeloop) -> float:
    """1e-6 relative, or the rounding of Timeloop's 2-decimal prints if that is larger."""
    prints = 1 + sum(len(lv.tensors) for lv in timeloop.levels)
    return max(ENERGY_REL * abs(timeloop.energy_pJ), ENERGY_PRINT_ROUNDING_PJ * prints)


def is_count_difference(line: str) -> bool:
    return not line.startswith("energy:")


# ---- one fuzz case ------------------------------------------------------------------------
OUTCOMES = ("ok", "infeasible", "unwritable", "rejected", "crash", "count_diff", "energy_diff",
            "no_random_mapping", "error")


def random_case(seed: int, fmt: Optional[str] = None, *, varied: bool = True):
    """(ArchFiles, Problem) of case `seed`; with `varied`, its files in varied spellings
    (`vary_spellings`), else in the generator's plain ones (the same machine)."""
    rng = random.Random(seed)
    files = random_arch_files(rng, fmt)
    problem = random_layer(rng)
    if varied:
        files = vary_spellings(files, random.Random(seed + 7_000_003))[0]
    return files, problem


# Every spelling timeloop-model reads for an attribute the generator writes, and one it does not.
_SPELLINGS = {"word-bits": (("word-bits", "word_width", "datawidth"), "word_bits"),
              "block-size": (("block-size", "block_size", "n_words"), "Block-Size"),
              "cluster-size": (("cluster-size",), "cluster_size"),
              "num-ports": (("num-ports", "n_ports"), "num_ports"),
              "num-banks": (("num-banks", "n_banks"), "num_banks")}
TIMELOOP_WORD_BITS = 16


def vary_spellings(files: ArchFiles, rng: random.Random) -> tuple[ArchFiles, ArchFiles]:
    """(varied, reference): the machine written as timeloop-model may find it, and the same
    machine in the generator's plain spellings. Varied: each attribute in any spelling Timeloop
    reads; decoys in spellings it does not read, beside the attribute (other value) or instead
    of the word size (Timeloop's 16 bits then, which the reference states); in a tree, the MACs
    listed before the storage, attributes on the subtree (Timeloop passes none down) and a
    component of a class Timeloop ignores. The loader must read both alike."""
    import copy

    doc, ref = copy.deepcopy(files.arch), copy.deepcopy(files.arch)

    def respell(attrs: dict, ref_attrs: dict, arithmetic=False) -> dict:
        out = {}
        for key, value in attrs.items():
            spellings, unread = _SPELLINGS.get(key, ((key,), None))
            if arithmetic and key == "word-bits":
                spellings = ("word-bits", "datawidth")
            if key == "word-bits" and rng.random() < 0.1:
                out[unread] = value  # read by neither: the word is Timeloop's default
                ref_attrs[key] = TIMELOOP_WORD_BITS
                continue
            out[rng.choice(spellings)] = value
            if unread and rng.random() < 0.15:
                out[unread] = value * 2
        return out

    if files.fmt == "tree":
        system = doc["architecture"]["subtree"][0]
        local = system["local"]
        for comp, ref_comp in zip(local, ref["architecture"]["subtree"][0]["local"]):
            comp["attributes"] = respell(comp["attributes"], ref_comp["attributes"],
                                         arithmetic=comp["class"] == "intmac")
        if rng.random() < 0.3:
            local.insert(rng.randrange(len(local)), local.pop())  # the MACs, earlier
        if rng.random() < 0.3:
            system["attributes"] = {"word-bits": 64, "technology": "45nm"}
        if rng.random() < 0.2:
            local.insert(rng.randrange(len(local) + 1),
                         {"name": "probe", "class": "wire_probe", "attributes": {"entries": 1}})
    else:
        arch, ref_arch = doc["arch"], ref["arch"]
        arch["arithmetic"] = respell(arch["arithmetic"], ref_arch["arithmetic"], arithmetic=True)
        arch["storage"] = [respell(level, ref_level)
                           for level, ref_level in zip(arch["storage"], ref_arch["storage"])]
    return ArchFiles(doc, files.mapspace, files.fmt), ArchFiles(ref, files.mapspace, files.fmt)


def write_case_files(files: ArchFiles, folder) -> tuple:
    """Write the architecture and mapspace documents; (arch path, mapspace path)."""
    import yaml
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch_path, mapspace_path = folder / "arch.yaml", folder / "mapspace.yaml"
    arch_path.write_text(yaml.safe_dump(files.arch, sort_keys=False))
    mapspace_path.write_text(yaml.safe_dump(files.mapspace, sort_keys=False))
    return arch_path, mapspace_path


def run_case(seed: int, folder, *, timeloop=None, random_mappings: int = 1,
             time_limit: float = 20.0, fmt: Optional[str] = None,
             schedule_it: bool = True) -> list[dict]:
    """Case `seed` in `folder`: CoSA's schedule and `random_mappings` random valid maps, each
    written, run through timeloop-model and the built-in model and compared. One record per
    map: {seed, kind, outcome (one of OUTCOMES), diffs, dir}; each map's files are in
    `folder/<kind>/` (arch.yaml, prob.yaml, map.yaml, timeloop-model.stats.txt, mapspace.yaml).
    """
    from pathlib import Path

    from ..architecture_yaml import load_architecture
    from ..cost_model import evaluate
    from ..errors import InfeasibleError, InputError, InputWarning, TimeloopError
    from ..scheduler import schedule
    from ..validity import check_mapping
    from .mapping_io import mapping_yaml
    from .runner import run_timeloop

    folder = Path(folder)
    files, problem = random_case(seed, fmt)
    write_case_files(files, folder)
    with warnings.catch_warnings():  # the decoy spellings are on purpose
        warnings.simplefilter("ignore", InputWarning)
        arch = load_architecture(folder / "arch.yaml", folder / "mapspace.yaml",
                                 name=f"fuzz{seed}")
    records = []
    maps = []
    if schedule_it:
        try:
            maps.append(("cosa", schedule(problem, arch, solver="highs",
                                          time_limit=time_limit)))
        except InfeasibleError as err:
            records.append({"seed": seed, "kind": "cosa", "outcome": "infeasible",
                            "diffs": [str(err)], "dir": str(folder)})
        except Exception as err:  # noqa: BLE001 - a fuzz harness records every failure
            records.append({"seed": seed, "kind": "cosa", "outcome": "error",
                            "diffs": [f"{type(err).__name__}: {err}"], "dir": str(folder)})
    rng = random.Random(seed * 7919 + 1)
    for k in range(random_mappings):
        mapping = random_mapping(problem, arch, rng)
        if mapping is None:
            records.append({"seed": seed, "kind": f"random{k}", "outcome": "no_random_mapping",
                            "diffs": [], "dir": str(folder)})
        else:
            maps.append((f"random{k}", mapping))
    for kind, mapping in maps:
        where = folder / kind
        record = {"seed": seed, "kind": kind, "outcome": "ok", "diffs": [], "dir": str(where),
                  "problem": str(problem), "arch_format": files.fmt}
        records.append(record)
        violations = check_mapping(mapping, problem, arch)
        if violations:
            record.update(outcome="error", diffs=[f"check_mapping: {v}" for v in violations])
            continue
        try:
            mapping_yaml(mapping, problem, arch)
        except InputError as err:
            record.update(outcome="unwritable", diffs=[str(err)])
            continue
        try:
            ours = evaluate(mapping, problem, arch)
            theirs = run_timeloop(mapping, problem, arch, timeloop=timeloop, workdir=where)
        except TimeloopError as err:
            record.update(outcome="crash", diffs=[str(err)[:2000]])
            continue
        (where / "mapspace.yaml").write_text((folder / "mapspace.yaml").read_text())
        if not theirs.valid:
            record.update(outcome="rejected", diffs=[theirs.error])
            continue
        diffs = compare(ours, theirs)
        record["diffs"] = diffs
        if any(is_count_difference(d) for d in diffs):
            record["outcome"] = "count_diff"
        elif diffs:
            record["outcome"] = "energy_diff"
    return records
