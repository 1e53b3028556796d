"""The per-layer report of a CoSAPass run: a table, JSON, CSV and a plot.

One `LayerRecord` per operator found, in module order. `status` is `scheduled` (CoSA schedule
applied), `fallback` (kept TVM's default schedule; `reason` says why) or `unsupported` (an
operator the pass does not schedule; left untouched). Layers with the same shape are solved once:
the later ones name the first in `same_as` and report a solve time of 0.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from ..errors import CoSAError

SCHEDULED, FALLBACK, UNSUPPORTED = "scheduled", "fallback", "unsupported"


@dataclass
class LayerRecord:
    index: int
    op: str  # conv2d, matmul, or the unsupported operator's short name
    shape: str
    status: str
    reason: str = ""
    name: str = ""  # binding name in the Relax module (informative; not unique)
    layout: str = ""
    dtype: str = ""
    macs: int = 0
    problem: str = ""  # dimension sizes, e.g. "R=3 S=3 P=56 Q=56 C=64 K=64 N=1"
    schedule: str = ""  # Mapping.short(): per level, temporal | spatial factors
    cycles: Optional[float] = None
    energy_pJ: Optional[float] = None
    energy_estimated: Optional[bool] = None
    utilization: Optional[float] = None
    lower_bound_cycles: Optional[float] = None
    solve_time_s: float = 0.0
    solver: str = ""
    solver_status: str = ""
    check_backend: str = ""
    cached: bool = False
    same_as: Optional[int] = None  # index of the first layer with this shape
    lowering: str = ""  # "generic", "gemmini", or "" when the op kept TVM's default
    kernel: str = ""  # the scheduled PrimFunc the layer calls (layers may share one)
    arch: str = ""  # the architecture (configuration) the layer was scheduled for
    arch_dtype: str = ""  # the operand type that architecture computes ("" if it does not say)

    @property
    def time_limited(self) -> bool:
        """The solver stopped at its time limit: the schedule may not be optimal."""
        return self.solver_status == "time_limit"

    @property
    def cycles_over_bound(self) -> Optional[float]:
        if not self.cycles or not self.lower_bound_cycles:
            return None
        return self.cycles / self.lower_bound_cycles


@dataclass
class Report:
    arch: str = ""
    arch_dtype: str = ""  # operand type of the architecture's target ("" if it does not say)
    arch_note: str = ""  # how the architecture was chosen (e.g. a preset matched to the dtype)
    solver: str = ""
    objective: str = ""
    check: str = ""
    records: list = field(default_factory=list)
    other_ops: dict = field(default_factory=dict)  # op name -> count, left untouched
    timings: dict = field(default_factory=dict)  # phase -> seconds
    cache: dict = field(default_factory=dict)  # hits, misses, path
    # why the compiled model may not equal onnxruntime exactly (from the import: onnx_qops)
    exactness_notes: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what passes before CoSAPass changed, and why

    # ---- summaries --------------------------------------------------------------------------
    def by_status(self, status: str) -> list:
        return [r for r in self.records if r.status == status]

    @property
    def scheduled(self) -> list:
        return self.by_status(SCHEDULED)

    @property
    def unique_layers(self) -> int:
        return sum(1 for r in self.records if r.status != UNSUPPORTED and r.same_as is None)

    @property
    def solved(self) -> int:
        """Unique layers the solver ran on in this compile (not cached)."""
        return sum(1 for r in self.records if r.same_as is None and r.solver_status
                   and not r.cached)

    def total_cycles(self) -> float:
        return sum(r.cycles or 0 for r in self.scheduled)

    def arch_label(self) -> str:
        """The architecture's name, with its operand type when the name does not show it."""
        if self.arch_dtype and self.arch_dtype not in self.arch:
            return f"{self.arch} ({self.arch_dtype})"
        return self.arch

    def summary(self) -> str:
        counts = {s: len(self.by_status(s)) for s in (SCHEDULED, FALLBACK, UNSUPPORTED)}
        text = (f"{len(self.records)} operators on {self.arch_label()}: "
                f"{counts[SCHEDULED]} scheduled, {counts[FALLBACK]} fallback, "
                f"{counts[UNSUPPORTED]} unsupported; "
                f"{self.unique_layers} unique shapes, {self.solved} solved, "
                f"{self.cache.get('hits', 0)} from the cache")
        limited = sum(1 for r in self.records if r.time_limited and r.same_as is None)
        if limited:
            text += f"; {limited} stopped at the time limit (may not be optimal)"
        if self.timings:
            text += "; " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        return text

    # ---- table ------------------------------------------------------------------------------
    def table(self, schedule_width: int = 70) -> str:
        head = ["#", "op", "shape", "dtype", "status", "cycles", "bound", "util", "energy uJ",
                "solve s", "solver", "check", "lowering", "schedule / reason"]
        rows = [head]
        notes: dict = {}  # reason of a scheduled layer (e.g. why its lowering is generic) -> layers
        for r in self.records:
            detail = r.schedule if r.status == SCHEDULED else r.reason
            if r.same_as is not None and r.status == SCHEDULED:
                detail = f"= #{r.same_as}"
            lowering = r.lowering
            if r.status == SCHEDULED and r.reason:
                notes.setdefault(r.reason, []).append(r.index)
                lowering += f" [{list(notes).index(r.reason) + 1}]"
            rows.append([
                str(r.index), r.op, r.shape, r.dtype,
                r.status + (" (cache)" if r.cached else "")
                + (" (time limit)" if r.time_limited else ""),
                _num(r.cycles), _num(r.lower_bound_cycles),
                "" if r.utilization is None else f"{100 * r.utilization:.0f}%",
                "" if r.energy_pJ is None else f"{r.energy_pJ / 1e6:.2f}"
                + ("*" if r.energy_estimated else ""),
                f"{r.solve_time_s:.2f}" if r.solver_status and r.same_as is None else "",
                r.solver, r.check_backend, lowering, _clip(detail, schedule_width),
            ])
        widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        for number, (reason, layers) in enumerate(notes.items(), 1):
            lines.append(f"[{number}] {_layer_list(layers)}: {reason}")
        if self.arch_note:
            lines.append(f"architecture: {self.arch} ({self.arch_note})")
        lines += [f"may differ from onnxruntime: {note}" for note in self.exactness_notes]
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(self.summary())
        if any(r.energy_estimated for r in self.records):
            lines.append("* energy estimated from word widths (no per-access energies given)")
        if self.other_ops:
            lines.append("untouched: " + ", ".join(f"{k.split('.')[-1]} x{v}"
                                                   for k, v in self.other_ops.items()))
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    # ---- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"arch": self.arch, "arch_dtype": self.arch_dtype, "arch_note": self.arch_note,
                "solver": self.solver, "objective": self.objective,
                "check": self.check, "timings": self.timings, "cache": self.cache,
                "other_ops": self.other_ops, "summary": self.summary(),
                "exactness_notes": list(self.exactness_notes),
                "notes": self.notes,
                "layers": [asdict(r) for r in self.records]}

    def to_json(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_json(cls, path) -> "Report":
        data = json.loads(Path(path).read_text())
        names = {f.name for f in fields(LayerRecord)}
        records = [LayerRecord(**{k: v for k, v in r.items() if k in names})
                   for r in data.get("layers", [])]
        return cls(arch=data.get("arch", ""), arch_dtype=data.get("arch_dtype", ""),
                   arch_note=data.get("arch_note", ""), solver=data.get("solver", ""),
                   objective=data.get("objective", ""), check=data.get("check", ""),
                   records=records, other_ops=data.get("other_ops", {}),
                   timings=data.get("timings", {}), cache=data.get("cache", {}),
                   exactness_notes=data.get("exactness_notes", []),
                   notes=data.get("notes", []))

    def to_csv(self, path) -> Path:
        path = Path(path)
        names = [f.name for f in fields(LayerRecord)]
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=names)
            writer.writeheader()
            for r in self.records:
                writer.writerow(asdict(r))
        return path

    def plot(self, path=None, *, title=None):
        """Cycles per layer (bars; fallback layers hatched) against the lower bound (markers).

        Returns the matplotlib Figure; saves it when `path` is given."""
        try:
            import matplotlib
        except ImportError:
            raise CoSAError("plotting the report needs matplotlib: pip install "
                            "'tvm_cosa[plot]'") from None
        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        rows = [r for r in self.records if r.status != UNSUPPORTED]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(rows) + 2), 4.2))
        xs = list(range(len(rows)))
        colors = ["tab:blue" if r.status == SCHEDULED else "tab:gray" for r in rows]
        ax.bar(xs, [r.cycles or 0 for r in rows], color=colors, label="CoSA schedule (cycles)")
        bounds = [(x, r.lower_bound_cycles) for x, r in zip(xs, rows) if r.lower_bound_cycles]
        if bounds:
            ax.scatter([b[0] for b in bounds], [b[1] for b in bounds], marker="_", s=140,
                       color="tab:red", zorder=3, label="lower bound")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r.index} {r.op}" for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel("cycles")
        ax.set_title(title or f"CoSA schedules on {self.arch}")
        if any(r.status == FALLBACK for r in rows):
            ax.bar([], [], color="tab:gray", label="fallback (no cycles)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def _layer_list(indices) -> str:
    """#0-#3,#7: runs of consecutive layer indices."""
    runs, start = [], None
    for i, k in enumerate(indices):
        if start is None:
            start = k
        if i + 1 == len(indices) or indices[i + 1] != k + 1:
            runs.append(f"#{start}" if start == k else f"#{start}-#{k}")
            start = None
    return ",".join(runs)


def _num(x) -> str:
    if x is None:
        return ""
    x = float(x)
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


# IRModule attributes in which the steps before CoSAPass leave notes for its report:
NOTES_ATTR = "tvm_cosa.notes"  # what a pass changed, and why (GemminiPrepare)
EXACTNESS_NOTES_ATTR = "tvm_cosa.exactness_notes"  # why outputs may differ from onnxruntime


def module_notes(mod, attr: str = NOTES_ATTR) -> list:
    """The notes left in `mod` under `attr`."""
    attrs = getattr(mod, "attrs", None)
    if attrs is None or attr not in attrs:
        return []
    return [str(note) for note in attrs[attr]]


def module_exactness_notes(mod) -> list:
    """The exactness notes the ONNX import attached to `mod` (tvm_cosa.relax.frontend)."""
    return module_notes(mod, EXACTNESS_NOTES_ATTR)
