"""The result of evaluating a schedule, from the built-in model or from real Timeloop.

Counts follow Timeloop's stats: reads, fills and updates are *per instance* of a level; totals
are per instance x utilized instances. `to_summary()` writes the layout of the reference
folder's `summary.json` so the two can be compared field by field.
"""

from __future__ import annotations

from typing import Optional

from .energy import ESTIMATE_LABEL

TENSOR_FIELDS = ("partition_size", "utilized_capacity", "utilized_instances", "utilized_clusters",
                 "reads", "updates", "fills", "temporal_reductions",
                 "address_generations_per_cluster", "energy_per_scalar_access_pJ",
                 "energy_per_instance_pJ", "energy_total_pJ", "read_bw", "write_bw", "shared_bw")


# Numbers timeloop-model prints with 2 decimals.
_PRINTED_2DP = ("energy_per_scalar_access_pJ", "energy_per_instance_pJ", "energy_total_pJ",
                "read_bw", "write_bw", "shared_bw")


class TensorStats:
    """One tensor (data space) kept at one level; counts per instance."""

    __slots__ = TENSOR_FIELDS

    def __init__(self, partition_size=None, utilized_capacity=None, utilized_instances=None,
                 utilized_clusters=None, reads=0, updates=0, fills=0, temporal_reductions=0,
                 address_generations_per_cluster=None, energy_per_scalar_access_pJ=None,
                 energy_per_instance_pJ=None, energy_total_pJ=None, read_bw=None, write_bw=None,
                 shared_bw=None):
        self.partition_size = partition_size
        self.utilized_capacity = utilized_capacity
        self.utilized_instances = utilized_instances
        self.utilized_clusters = utilized_clusters
        self.reads, self.updates, self.fills = reads, updates, fills
        self.temporal_reductions = temporal_reductions
        self.address_generations_per_cluster = address_generations_per_cluster
        self.energy_per_scalar_access_pJ = energy_per_scalar_access_pJ
        self.energy_per_instance_pJ = energy_per_instance_pJ
        self.energy_total_pJ = energy_total_pJ
        self.read_bw, self.write_bw, self.shared_bw = read_bw, write_bw, shared_bw

    @property
    def accesses(self) -> int:
        return self.reads + self.updates + self.fills

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in TENSOR_FIELDS}

    def __repr__(self):
        return (f"TensorStats(capacity={self.utilized_capacity}, instances="
                f"{self.utilized_instances}, reads={self.reads}, fills={self.fills}, "
                f"updates={self.updates})")


class LevelStats:
    """One storage level: its cycles and the tensors it keeps (`tensors` = Timeloop's
    data spaces)."""

    __slots__ = ("name", "index", "cycles", "bandwidth_throttling", "tensors", "specs",
                 "loop_nest")

    def __init__(self, name, index, cycles, bandwidth_throttling, tensors, specs=None,
                 loop_nest=None):
        self.name, self.index, self.cycles = name, index, cycles
        self.bandwidth_throttling = bandwidth_throttling
        self.tensors = tensors
        self.specs = specs
        self.loop_nest = loop_nest

    @property
    def energy_pJ(self) -> float:
        return sum(t.energy_total_pJ for t in self.tensors.values())

    def __repr__(self):
        return f"LevelStats({self.name}, cycles={self.cycles}, tensors={self.tensors})"


class Evaluation:
    """Cycles, energy and per-level / per-tensor access counts of one schedule.

    `valid` False: `error` holds the reason in Timeloop's words and the numbers are None.
    `energy_estimated`: the energies come from a built-in estimate, not the architecture's
    energy table (see `tvm_cosa.cost_model.energy`).
    `levels`: `LevelStats` innermost first (built on first use: ranking many schedules only
    needs cycles and energy). `networks`: per link, as Timeloop's stats list them.
    """

    __slots__ = ("valid", "backend", "error", "cycles", "energy_pJ", "utilization", "computes",
                 "energy_estimated", "arithmetic", "_levels", "_networks", "info",
                 "_build_levels", "_presentation")

    def __init__(self, valid: bool, backend: str, error: Optional[str] = None,
                 cycles: Optional[int] = None, energy_pJ: Optional[float] = None,
                 utilization: Optional[float] = None, computes: Optional[int] = None,
                 energy_estimated: bool = False, arithmetic: Optional[dict] = None,
                 levels: Optional[list] = None, networks: Optional[list] = None,
                 info: Optional[dict] = None):
        self.valid, self.backend, self.error = valid, backend, error
        self.cycles, self.energy_pJ = cycles, energy_pJ
        self.utilization, self.computes = utilization, computes
        self.energy_estimated = energy_estimated
        self.arithmetic = arithmetic if arithmetic is not None else {}
        self._levels = levels if levels is not None else []
        self._networks = networks
        self.info = info if info is not None else {}
        self._build_levels = None  # callable filling _levels on first use
        self._presentation = None  # callable filling specs, loop nests and networks

    @property
    def levels(self) -> list:
        if self._build_levels is not None:
            build, self._build_levels = self._build_levels, None
            self._levels = build()
        return self._levels

    @property
    def networks(self) -> list:
        self._fill_presentation()
        return self._networks if self._networks is not None else []

    @networks.setter
    def networks(self, value):
        self._networks = value

    def __eq__(self, other):
        if not isinstance(other, Evaluation):
            return NotImplemented
        return self.to_summary() == other.to_summary()

    def __repr__(self):
        return str(self)

    # ---- access ---------------------------------------------------------------------------
    def level(self, name) -> LevelStats:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(f"no level {name!r}; levels are {[lv.name for lv in self.levels]}")

    def tensor(self, level, tensor) -> TensorStats:
        return self.level(level).tensors[tensor]

    @property
    def energy_uJ(self) -> Optional[float]:
        return None if self.energy_pJ is None else self.energy_pJ / 1e6

    @property
    def edp(self) -> Optional[float]:
        """Energy-delay product in pJ x cycles."""
        return None if not self.valid else self.energy_pJ * self.cycles

    @property
    def energy_label(self) -> str:
        return ESTIMATE_LABEL if self.energy_estimated else "from the architecture's energy table"

    def pj_per_compute(self) -> dict:
        if not self.valid or not self.computes:
            return {}
        out = {self.arithmetic.get("name", "__ARITH__"):
               self.arithmetic.get("energy_pJ", 0.0) / self.computes}
        for lv in self.levels:
            out[lv.name] = lv.energy_pJ / self.computes
        out["Total"] = self.energy_pJ / self.computes
        return out

    # ---- output ---------------------------------------------------------------------------
    def _fill_presentation(self):
        if self._presentation is not None:
            present, self._presentation = self._presentation, None
            present(self)

    def to_summary(self, rounded: bool = False) -> dict:
        """A dict with the keys and layout of the reference folder's summary.json.

        `rounded`: round every number Timeloop prints with 2 decimals the way it prints it
        (energies, bandwidths, utilization, throttling, hops), and sum the energy from the
        rounded per-tensor energies like the reference files do, so that a built-in result and
        Timeloop's compare field by field.
        """
        self._fill_presentation()
        # `error` as Timeloop prints it, so both backends compare field by field.
        out = {"valid": self.valid, "error": None if self.error is None else f"ERROR: {self.error}",
               "backend": self.backend, "energy_estimated": self.energy_estimated}
        if self.energy_estimated:
            out["energy_note"] = ESTIMATE_LABEL
        out.update({k: v for k, v in self.info.items()
                    if k in ("exit_code", "timeloop", "command", "wall_s", "meta")})
        if not self.valid:
            return out
        r2 = (lambda x: None if x is None else round(x, 2)) if rounded else (lambda x: x)
        levels = []
        energy = r2(self.arithmetic.get("energy_pJ", 0.0))
        for lv in self.levels:
            spaces = {}
            for t, stats in lv.tensors.items():
                d = stats.to_dict()
                accesses = stats.reads + stats.updates + stats.fills
                d["energy_per_scalar_access_pJ_derived"] = (
                    stats.energy_per_instance_pJ / accesses if accesses else 0.0)
                for key in _PRINTED_2DP:
                    d[key] = r2(d[key])
                energy += d["energy_total_pJ"]
                spaces[t] = d
            specs = dict(lv.specs or {})
            for key in ("vector_access_energy_pJ", "read_bandwidth", "write_bandwidth",
                        "shared_bandwidth"):
                if key in specs:
                    specs[key] = r2(specs[key])
            levels.append({"name": lv.name, "index": lv.index, "specs": specs,
                           "loop_nest": lv.loop_nest, "cycles": lv.cycles,
                           "bandwidth_throttling": r2(lv.bandwidth_throttling),
                           "dataspaces": spaces})
        arithmetic = dict(self.arithmetic)
        arithmetic["energy_pJ"] = r2(arithmetic.get("energy_pJ"))
        arithmetic["compute_energy_pJ"] = r2(arithmetic.get("compute_energy_pJ"))
        networks = []
        for net in self.networks:
            spaces = {t: {**v, "avg_hops": r2(v.get("avg_hops"))}
                      for t, v in net["dataspaces"].items()}
            networks.append({"name": net["name"], "dataspaces": spaces})
        out.update({
            "cycles": self.cycles,
            "energy_pJ": round(energy, 2) if rounded else self.energy_pJ,
            "energy_uJ_summary": round(self.energy_pJ / 1e6, 2),
            "utilization": r2(self.utilization),
            "computes": self.computes,
            "arithmetic": arithmetic,
            "pJ_per_compute": {k: r2(v) for k, v in self.pj_per_compute().items()},
            "levels": levels,
            "networks": networks,
        })
        return out

    def describe(self) -> str:
        """A per-level, per-tensor table (counts per instance, as Timeloop prints them)."""
        self._fill_presentation()
        head = f"[{self.backend}] "
        if not self.valid:
            return head + f"INVALID: {self.error}\n"
        lines = [head + f"cycles {self.cycles}  energy {self.energy_pJ / 1e6:.2f} uJ  "
                 f"utilization {self.utilization:.2f}  computes {self.computes}"]
        if self.energy_estimated:
            lines.append(f"energy {ESTIMATE_LABEL}")
        arith = self.arithmetic
        lines.append(f"{arith.get('name', '__ARITH__')}: {arith.get('utilized_instances')}/"
                     f"{arith.get('instances')} MACs, energy {arith.get('energy_pJ', 0):.2f} pJ")
        row = "{:<20} {:<8} {:>10} {:>8} {:>12} {:>12} {:>12} {:>15}"
        lines.append(row.format("level", "tensor", "capacity", "inst", "reads", "fills",
                                "updates", "energy pJ"))
        for lv in self.levels:
            throttle = ("" if lv.bandwidth_throttling in (None, 1.0)
                        else f", bandwidth throttling {lv.bandwidth_throttling:.2f}")
            lines.append(f"{lv.name}: cycles {lv.cycles}{throttle}")
            for t, s in lv.tensors.items():
                lines.append(row.format("", t, s.utilized_capacity, s.utilized_instances,
                                        s.reads, s.fills, s.updates,
                                        f"{s.energy_total_pJ:.2f}"))
        return "\n".join(lines) + "\n"

    def __str__(self):
        if not self.valid:
            return f"Evaluation({self.backend}, invalid: {self.error})"
        est = " (estimated)" if self.energy_estimated else ""
        return (f"Evaluation({self.backend}, cycles={self.cycles}, energy={self.energy_pJ:.1f} "
                f"pJ{est}, utilization={self.utilization:.3f})")
