"""Parse `timeloop-model.stats.txt` into the same `Evaluation` the built-in model returns.

The file lists the arithmetic level, then each storage level (SPECS, MAPPING loop nest, STATS
with one block per kept data space), then the networks, then the summary (cycles, energy,
utilization, computes, pJ/compute). Numbers are read as printed: counts exactly, energies and
bandwidths with Timeloop's 2-decimal rounding.
"""

from __future__ import annotations

import re

from ..cost_model.result import Evaluation, LevelStats, TensorStats
from ..errors import TimeloopError

# stats.txt label -> (TensorStats field, type)
_TENSOR_KEYS = {
    "Partition size": ("partition_size", int),
    "Utilized capacity": ("utilized_capacity", int),
    "Utilized instances (max)": ("utilized_instances", int),
    "Utilized clusters (max)": ("utilized_clusters", int),
    "Scalar reads (per-instance)": ("reads", int),
    "Scalar updates (per-instance)": ("updates", int),
    "Scalar fills (per-instance)": ("fills", int),
    "Temporal reductions (per-instance)": ("temporal_reductions", int),
    "Address generations (per-cluster)": ("address_generations_per_cluster", int),
    "Energy (per-scalar-access)": ("energy_per_scalar_access_pJ", float),
    "Energy (per-instance)": ("energy_per_instance_pJ", float),
    "Energy (total)": ("energy_total_pJ", float),
    "Shared Bandwidth (per-instance)": ("shared_bw", float),
    "Read Bandwidth (per-instance)": ("read_bw", float),
    "Write Bandwidth (per-instance)": ("write_bw", float),
}
_SPEC_KEYS = {
    "Technology": "technology", "Size": "size", "Word bits": "word_bits",
    "Block size": "block_size", "Cluster size": "cluster_size", "Instances": "instances",
    "Shared bandwidth": "shared_bandwidth", "Read bandwidth": "read_bandwidth",
    "Write bandwidth": "write_bandwidth", "Multiple buffering": "multiple_buffering",
    "Effective size": "effective_size", "Min utilization": "min_utilization",
    "Vector access energy": "vector_access_energy_pJ",
}
_INT_SPECS = {"size", "word_bits", "block_size", "cluster_size", "instances", "effective_size"}
_NETWORK_KEYS = {"Fanout": ("fanout", int), "Multicast factor": ("multicast_factor", int),
                 "Ingresses": ("ingresses", float),
                 "Spatial reductions": ("spatial_reductions", int),
                 "Average number of hops": ("avg_hops", float)}
_KV = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")


def _number(text: str):
    """The leading number of '112896', '0.25 pJ', '1024 (1024*1)', '-' (None)."""
    match = re.match(r"^-?\d+(\.\d+)?(e[-+]?\d+)?", text.strip())
    return None if match is None else float(match.group(0))


def parse_stats(text: str) -> Evaluation:
    """`timeloop-model.stats.txt` -> Evaluation(backend='timeloop')."""
    lines = text.splitlines()
    if not any(line.startswith("Summary Stats") for line in lines):
        raise TimeloopError("not a timeloop-model stats file: no 'Summary Stats' section")
    arithmetic, levels, networks = {}, [], []
    summary, per_compute = {}, {}
    section = None  # "arith" | "level" | "network" | "summary" | "percompute"
    part = None  # "specs" | "mapping" | "stats"
    level = tensor = None
    network = None
    for raw in lines:
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or set(stripped) == {"-"}:
            continue
        match = re.match(r"^=== (.+) ===$", stripped)
        if match and section in (None, "arith", "level"):
            name = match.group(1)
            if not arithmetic:
                section, arithmetic = "arith", {"name": name}
            else:
                section, tensor = "level", None
                level = {"name": name, "specs": {}, "loop_nest": [], "stats": {}, "tensors": {}}
                levels.append(level)
            part = None
            continue
        if line.startswith("Networks"):
            section = "networks"
            continue
        if section == "networks" and "<==>" in stripped and not line.startswith(" "):
            network = {"name": stripped, "dataspaces": {}}
            networks.append(network)
            tensor = None
            continue
        if line.startswith("Operational Intensity Stats"):
            section = "intensity"
            continue
        if line.startswith("Summary Stats"):
            section = "summary"
            continue
        if section == "summary" and stripped.startswith("pJ/Compute"):
            section = "percompute"
            continue
        if stripped in ("SPECS", "STATS", "MAPPING"):
            part = stripped.lower()
            tensor = None
            continue
        if section == "level" and part == "mapping":
            if stripped.startswith("for "):
                level["loop_nest"].append(line[6:] if line.startswith("      ") else stripped)
            continue
        if section in ("level", "networks") and part == "stats" and re.match(r"^\w+:$", stripped):
            tensor = {}
            target = level["tensors"] if section == "level" else network["dataspaces"]
            target[stripped[:-1]] = tensor
            continue
        kv = _KV.match(line)
        if section == "summary":
            m = re.match(r"^(\w[\w ]*?)\s*[:=]\s*(.+)$", stripped)
            if m:
                summary[m.group(1)] = m.group(2)
            continue
        if section == "percompute":
            m = re.match(r"^(.+?)\s*=\s*(\S+)$", stripped)
            if m:
                per_compute[m.group(1)] = float(m.group(2))
            continue
        if kv is None:
            continue
        key, value = kv.group(1), kv.group(2)
        if section == "arith":
            arithmetic[key] = value
        elif section == "level" and part == "specs":
            if key in _SPEC_KEYS:
                level["specs"][_SPEC_KEYS[key]] = value
        elif section == "level" and part == "stats":
            if tensor is None:
                level["stats"][key] = value
            elif key in _TENSOR_KEYS:
                tensor[key] = value
        elif section == "networks" and part == "stats" and tensor is not None:
            if key in _NETWORK_KEYS:
                tensor[key] = value
    return _evaluation(arithmetic, levels, networks, summary, per_compute)


def _evaluation(arithmetic, levels, networks, summary, per_compute) -> Evaluation:
    try:
        cycles = int(_number(summary["Cycles"]))
        computes = int(_number(summary["Computes"]))
        utilization = _number(summary["Utilization"])
    except (KeyError, TypeError) as err:
        raise TimeloopError(f"stats file has no summary value {err}") from None
    arith = {
        "name": arithmetic.get("name", "__ARITH__"),
        "word_bits": _int(arithmetic.get("Word bits")),
        "instances": _int(arithmetic.get("Instances")),
        "compute_energy_pJ": _number(arithmetic.get("Compute energy", "")),
        "utilized_instances": _int(arithmetic.get("Utilized instances")),
        "computes": _int(arithmetic.get("Computes (total)")),
        "cycles": _int(arithmetic.get("Cycles")),
        "energy_pJ": _number(arithmetic.get("Energy (total)", "")) or 0.0,
    }
    out_levels = []
    energy = arith["energy_pJ"]
    for index, lv in enumerate(levels, start=1):
        tensors = {}
        for name, values in lv["tensors"].items():
            fields = {}
            for label, (field, kind) in _TENSOR_KEYS.items():
                if label in values:
                    number = _number(values[label])
                    fields[field] = None if number is None else kind(number)
            tensors[name] = TensorStats(**fields)
            energy += fields.get("energy_total_pJ") or 0.0
        specs = {}
        for key, value in lv["specs"].items():
            number = _number(value)
            if key == "technology":
                specs[key] = value
            elif key in _INT_SPECS:
                specs[key] = None if number is None else int(number)
            else:
                specs[key] = number
        stats = lv["stats"]
        out_levels.append(LevelStats(lv["name"], index, _int(stats.get("Cycles")),
                                     _number(stats.get("Bandwidth throttling", "1")), tensors,
                                     specs=specs, loop_nest=lv["loop_nest"]))
    out_networks = []
    for net in networks:
        spaces = {}
        for name, values in net["dataspaces"].items():
            spaces[name] = {field: (None if _number(values[label]) is None
                                    else kind(_number(values[label])))
                            for label, (field, kind) in _NETWORK_KEYS.items() if label in values}
        out_networks.append({"name": net["name"], "dataspaces": spaces})
    if arith["instances"] and cycles:
        # The summary prints utilization with 2 decimals (0.00 for a depthwise layer on a big
        # array): recompute it the way Timeloop does, from the exact counts.
        utilization = computes / (arith["instances"] * cycles)
    result = Evaluation(valid=True, backend="timeloop", cycles=cycles, energy_pJ=energy,
                        utilization=utilization, computes=computes, arithmetic=arith,
                        levels=out_levels, networks=out_networks,
                        info={"energy_uJ_summary": _number(summary.get("Energy", "")),
                              "pJ_per_compute": per_compute})
    return result


def _int(text):
    number = _number(text) if text is not None else None
    return None if number is None else int(number)
