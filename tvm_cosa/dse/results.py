"""Per (configuration, model) figures, the Pareto front, results.csv, pareto.png and the table.

A row adds up its model's layers, each unique layer times its occurrences, run one after the
other: cycles and energy are sums, EDP = energy x cycles, MAC utilization = the model's MACs /
(MAC count x cycles). Status: `ok` (every layer scheduled), `partial` (some layers fell back: the
totals cover the scheduled ones only, so the row is not compared on the front), `infeasible` (no
layer fits this configuration; the reason says why).
"""

from __future__ import annotations

import csv
from pathlib import Path

OK, PARTIAL, INFEASIBLE = "ok", "partial", "infeasible"
FIGURES = ["status", "cycles", "energy_uJ", "edp_uJ_cycles", "mac_utilization",
           "area_mm2_estimate", "layers", "layers_scheduled", "layers_fallback",
           "fallback_reasons", "energy_estimated", "solve_time_s", "pareto", "pareto_area"]
REASON_CHARS = 300  # a solver message can run long; the CSV keeps its start


def model_row(point, model, outcomes, layer_index, area_mm2) -> dict:
    """The row of `model` on configuration `point`. outcomes: (config, layer) -> task outcome."""
    cycles = energy = solve_time = 0.0
    scheduled = fallback = 0
    estimated = False
    reasons = {}
    for key, (problem, count) in model.layers.items():
        out = outcomes[(point.index, layer_index[key])]
        solve_time += out.get("solve_time_s") or 0.0
        ev = out.get("evaluation")
        if out.get("error") or ev is None:
            fallback += count
            kind, message = out.get("error") or ("no evaluation", "")
            reason = f"{kind}: {_first_line(message)}"[:REASON_CHARS]
            reasons[reason] = reasons.get(reason, 0) + count
            continue
        scheduled += count
        cycles += ev["cycles"] * count
        energy += ev["energy_pJ"] * count
        estimated |= bool(ev.get("energy_estimated"))
    status = OK if not fallback else (INFEASIBLE if not scheduled else PARTIAL)
    macs = sum(p.macs * n for key, (p, n) in model.layers.items()
               if not outcomes[(point.index, layer_index[key])].get("error"))
    row = {"config": point.index, "arch": point.arch.name, **point.params, "model": model.name,
           "status": status, "layers": scheduled + fallback, "layers_scheduled": scheduled,
           "layers_fallback": fallback,
           "fallback_reasons": "; ".join(f"{n} layer{'s' if n > 1 else ''}: {r}"
                                         for r, n in sorted(reasons.items())),
           "area_mm2_estimate": round(area_mm2, 6), "solve_time_s": round(solve_time, 4),
           "energy_estimated": estimated, "pareto": False, "pareto_area": False}
    if scheduled:
        row.update(cycles=int(round(cycles)), energy_uJ=energy / 1e6,
                   edp_uJ_cycles=energy / 1e6 * cycles,
                   mac_utilization=macs / (point.arch.num_macs * cycles) if cycles else None)
    else:
        row.update(cycles=None, energy_uJ=None, edp_uJ_cycles=None, mac_utilization=None)
    return row


def _first_line(text) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def mark_pareto(rows) -> None:
    """Set row["pareto"] for the `ok` rows no other ok row of the same model beats on cycles and
    energy (better on one, no worse on the other; equal points are all kept), and
    row["pareto_area"] likewise on cycles, energy and area together."""
    by_model = {}
    for row in rows:
        row["pareto"] = row["pareto_area"] = False
        if row["status"] == OK:
            by_model.setdefault(row["model"], []).append(row)
    for group in by_model.values():
        for row in group:
            row["pareto"] = not any(_beats(o, row, PARETO_AXES) for o in group)
            row["pareto_area"] = not any(_beats(o, row, PARETO_AREA_AXES) for o in group)


PARETO_AXES = ("cycles", "energy_uJ")
PARETO_AREA_AXES = ("cycles", "energy_uJ", "area_mm2_estimate")


def _beats(a, b, axes) -> bool:
    return all(a[x] <= b[x] for x in axes) and any(a[x] < b[x] for x in axes)


def columns(param_names) -> list:
    return ["config", "arch", *param_names, "model", *FIGURES]


def write_csv(rows, param_names, path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns(param_names), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return path


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e15 else repr(v)
    return v


def pareto_table(rows, param_names) -> str:
    """The Pareto-optimal configurations of each model as a text table: those on the front of
    cycles, energy and area; `*` marks the ones also on the cycles-energy front."""
    head = [*param_names, "cycles", "energy uJ", "EDP uJ*cyc", "MAC util", "area mm2 (est.)",
            "cyc-energy front"]
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        front = sorted((r for r in rows if r["model"] == model and r["pareto_area"]),
                       key=lambda r: r["cycles"])
        counts = {s: sum(1 for r in rows if r["model"] == model and r["status"] == s)
                  for s in (OK, PARTIAL, INFEASIBLE)}
        on_2d = sum(1 for r in front if r["pareto"])
        lines.append(f"{model}: {len(front)} Pareto-optimal in cycles, energy and area "
                     f"({on_2d} in cycles and energy alone) of {counts[OK]} ok configurations "
                     f"({counts[PARTIAL]} partial, {counts[INFEASIBLE]} infeasible)")
        body = [[str(r[p]) for p in param_names] +
                [f"{r['cycles']:,}", f"{r['energy_uJ']:.1f}", f"{r['edp_uJ_cycles']:.3g}",
                 f"{100 * r['mac_utilization']:.1f}%", f"{r['area_mm2_estimate']:.3f}",
                 "*" if r["pareto"] else ""]
                for r in front]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(head)]
        lines.append("  " + "  ".join(h.rjust(w) for h, w in zip(head, widths)))
        lines.extend("  " + "  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body)
    return "\n".join(lines)


def plot(rows, path, *, title="") -> Path:
    """Energy against cycles (log) per model, area as colour, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5.2 * max(1, len(models)), 4.2),
                             squeeze=False, layout="constrained")
    ok = [r for r in rows if r["status"] == OK]
    areas = [r["area_mm2_estimate"] for r in ok] or [0.0, 1.0]
    norm = matplotlib.colors.Normalize(vmin=min(areas), vmax=max(areas))
    scatter = None
    for ax, model in zip(axes[0], models):
        pts = [r for r in ok if r["model"] == model]
        if pts:
            scatter = ax.scatter([r["cycles"] for r in pts], [r["energy_uJ"] for r in pts],
                                 c=[r["area_mm2_estimate"] for r in pts], cmap="viridis",
                                 norm=norm, s=22, alpha=0.85, edgecolors="none")
            with_area = [r for r in pts if r["pareto_area"] and not r["pareto"]]
            ax.scatter([r["cycles"] for r in with_area], [r["energy_uJ"] for r in with_area],
                       s=60, facecolors="none", edgecolors="0.3", linewidths=0.8,
                       label="Pareto-optimal with area")
            front = sorted((r for r in pts if r["pareto"]), key=lambda r: r["cycles"])
            ax.plot([r["cycles"] for r in front], [r["energy_uJ"] for r in front], "-o",
                    color="crimson", mfc="none", ms=9, lw=1.2, label="Pareto front (cycles, energy)")
            # cycles span decades (array sizes), energy rarely does
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.0e}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.legend(loc="upper left", fontsize=7)
        failed = sum(1 for r in rows if r["model"] == model and r["status"] != OK)
        ax.set_title(f"{model}" + (f" ({failed} configs not all-fit)" if failed else ""),
                     fontsize=10)
        ax.set_xlabel("cycles")
        ax.set_ylabel("energy (uJ)")
        ax.grid(True, which="both", alpha=0.25)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="area mm$^2$ (estimate)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)

