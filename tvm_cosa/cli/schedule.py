"""`tvm-cosa schedule`: schedule layer files on an architecture and print each loop nest.

    tvm-cosa schedule --arch {simba|gemmini|ARCH.yaml} [--mapspace MAPSPACE.yaml] \\
        LAYER.yaml [LAYER.yaml ...] [--timeloop-map DIR] [--json FILE]

Every input is read and checked before the first solve, so a typo in the tenth file does not
cost nine solves. A layer that cannot be scheduled (infeasible, solver failure) is reported and
the others go on; the exit status is then 1.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
from tqdm import tqdm

from ..errors import CoSAError, InfeasibleError, InputError, SolverError

SOLVERS = ("auto", "highs", "gurobi")


@click.command("schedule")
@click.option("--arch", "arch_spec", required=True, metavar="{simba|gemmini|ARCH.yaml}",
              help="A preset name or an architecture YAML file (CoSA / Timeloop 0.3 'arch:', "
                   "Timeloop 'architecture:', or the short 'levels:' format).")
@click.option("--mapspace", type=click.Path(dir_okay=False), default=None,
              help="Timeloop mapspace / constraints file whose bypass entries set what each "
                   "level keeps.")
@click.option("--solver", type=click.Choice(SOLVERS), default="auto", show_default=True,
              help="MILP solver; auto = Gurobi when its licence takes the model, else HiGHS.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Per-layer solver time limit [default: 2.5, and on "
                                      "until a first schedule; inf: prove optimality].")
@click.option("--gap", "mip_gap", type=click.FloatRange(min=0, max=1), default=None,
              help="Relative MIP gap at which the solver may stop (e.g. 0.01).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Solver threads per layer.")
@click.option("--timeloop-map", "map_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Write each schedule as DIR/<layer file stem>.map.yaml.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Write one JSON record per layer to FILE.")
@click.option("--objective", "objective_name", default="default", show_default=True,
              type=click.Choice(["default", "latency", "energy", "cosa"]),
              help="default: latency, then energy; cosa: the original CoSA's terms.")
@click.option("--polish/--no-polish", default=True, show_default=True,
              help="Improve each MILP schedule by single moves the exact cost model (= "
                   "timeloop-model) judges better (tvm_cosa.polish).")
@click.option("--nest/--no-nest", default=True, show_default=True,
              help="Print each layer's loop nest (--no-nest: only the summary line).")
@click.argument("layers", nargs=-1, required=True, type=click.Path(dir_okay=False),
                metavar="LAYER.yaml...")
def schedule(arch_spec, mapspace, solver, time_limit, mip_gap, threads, map_dir, json_path,
             objective_name, polish, nest, layers):
    """Schedule LAYER.yaml files (CoSA / Timeloop problem format) with CoSA's MILP."""
    arch, problems = _load_inputs(arch_spec, mapspace, layers)
    if map_dir is not None:
        _check_unique_stems(layers)
        _timeloop_writer()  # fail before solving if the writer is missing
    from ..formulation import Objective
    from ..scheduler import schedule as run_scheduler

    objective = Objective.preset(objective_name)

    records = []
    with tqdm(total=len(problems), unit="layer", file=sys.stderr, leave=False,
              disable=len(problems) < 2, dynamic_ncols=True) as bar:
        for path, problem in problems:
            bar.set_description(problem.name)
            record, mapping = _schedule_one(run_scheduler, problem, arch, path, solver=solver,
                                            time_limit=time_limit, mip_gap=mip_gap,
                                            threads=threads, objective=objective,
                                            polish=polish)
            if mapping is not None and map_dir is not None:
                record["timeloop_map"] = str(_write_map(mapping, problem, arch, path, map_dir))
            _echo(_report(record, problem, arch, mapping, nest), bar)
            records.append(record)
            bar.update()
    if len(records) > 1:
        click.echo(summary_table(records))
    if json_path is not None:
        _write_json(json_path, records)
    failed = [r["layer"] for r in records if r["error"] or not r["valid"]]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(records)} layers have no valid "
                                   f"schedule: {', '.join(failed)}")


# ---- inputs --------------------------------------------------------------------------------
def _load_inputs(arch_spec, mapspace, layers):
    from ..architecture_yaml import load_architecture
    from ..problem import Problem

    try:
        arch = load_architecture(arch_spec, mapspace)
        problems = [(Path(p), Problem.from_yaml(p)) for p in layers]
    except InputError as err:
        raise click.ClickException(str(err)) from None
    return arch, problems


def _check_unique_stems(layers):
    seen = {}
    for p in layers:
        stem = Path(p).stem
        if stem in seen:
            raise click.BadParameter(f"{seen[stem]} and {p} would both be written to "
                                     f"{stem}.map.yaml; rename one", param_hint="--timeloop-map")
        seen[stem] = p


def _timeloop_writer():
    try:
        from ..timeloop import write_mapping
    except ImportError as err:
        raise click.ClickException(f"--timeloop-map is not available in this build ({err})") \
            from None
    return write_mapping


# ---- one layer -------------------------------------------------------------------------------
def _schedule_one(run_scheduler, problem, arch, path, **options):
    """(JSON record, mapping or None). Solver failures become the record's `error`."""
    from ..validity import check_mapping

    record = {"layer": problem.name, "file": str(path), "kind": problem.kind,
              "dims": problem.size, "macs": problem.macs, "arch": arch.name}
    try:
        mapping = run_scheduler(problem, arch, objective=options["objective"],
                                solver=options["solver"],
                                time_limit=options["time_limit"], mip_gap=options["mip_gap"],
                                threads=options["threads"], polish=options["polish"])
    except (InfeasibleError, SolverError) as err:
        status = "infeasible" if isinstance(err, InfeasibleError) else "solver_error"
        record.update(solver=options["solver"], status=status, solve_time_s=None,
                      objective=None, valid=False, error=err.cli_message())
        return record, None
    except CoSAError as err:
        raise click.ClickException(f"{path}: {err.cli_message()}") from None
    info = mapping.info
    violations = check_mapping(mapping, problem, arch)
    record.update(
        solver=info.get("solver"), status=info.get("status"),
        solve_time_s=info.get("solve_time_s"), objective=info.get("objective"),
        bound=info.get("bound"), gap=info.get("gap"),
        valid=not violations, error=None,
        violations=[str(v) for v in violations],
        num_vars=info.get("num_vars"), num_constraints=info.get("num_constraints"),
        compute_cycles=mapping.compute_cycles(),
        mac_utilization=mapping.utilized_macs() / arch.num_macs,
        buffer_utilization=buffer_utilization(mapping, problem, arch),
        mapping=mapping.to_dict(),
        polish=info.get("polish"),
    )
    return record, mapping


def buffer_utilization(mapping, problem, arch) -> dict:
    """Per bounded level: fraction of one instance's entries its kept tiles use."""
    out = {}
    for i, level in enumerate(arch.levels):
        if not level.entries:
            continue
        kept = [t for t in problem.tensor_names if t in mapping.kept(arch, i)]
        used = sum(mapping.tile_size(problem, t, i) for t in kept)
        out[level.name] = used / level.entries
    return out


def _write_map(mapping, problem, arch, path, map_dir) -> Path:
    out = Path(map_dir) / f"{Path(path).stem}.map.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _timeloop_writer()(mapping, problem, arch, out)
    except (CoSAError, OSError) as err:
        raise click.ClickException(f"writing {out}: {err}") from None
    return out


def _write_json(json_path, records):
    try:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(records, f, indent=1, default=str)
    except OSError as err:
        raise click.ClickException(f"writing {json_path}: {err}") from None


# ---- output --------------------------------------------------------------------------------
def _echo(text, bar):
    if bar.disable:
        click.echo(text)
    else:
        bar.write(text, file=sys.stdout)


def _report(record, problem, arch, mapping, nest) -> str:
    shape = " ".join(f"{d}={n}" for d, n in problem.sizes)
    lines = [f"== {problem.name}: {problem.kind} [{shape}] on {arch.name}"]
    if mapping is None:
        lines.append(f"   no schedule ({record['status']}): {record['error']}")
        return "\n".join(lines) + "\n"
    if nest:
        lines.append(mapping.loop_nest(problem, arch).rstrip("\n"))
    polish = record.get("polish")
    if polish and polish["moves"]:
        lines.append(f"   polished by the cost model: {polish['moves']} move(s), cycles "
                     f"{polish['cycles_before']} -> {polish['cycles']}, energy "
                     f"{polish['energy_before_pJ']:.4g} -> {polish['energy_pJ']:.4g} pJ")
    lines.append(
        f"   objective {_num(record['objective'])}, {record['solver']} {record['status']} in "
        f"{_seconds(record['solve_time_s'])} ({record['num_vars']} vars, "
        f"{record['num_constraints']} constraints); {record['compute_cycles']} compute cycles, "
        f"{100 * record['mac_utilization']:.1f}% of {arch.num_macs} MACs; "
        + ("valid" if record["valid"] else "INVALID: " + "; ".join(record["violations"])))
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _seconds(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


def summary_table(records) -> str:
    headers = ("layer", "kind", "MACs", "solver", "status", "objective", "time", "MAC util",
               "valid")
    rows = [(r["layer"], r["kind"], str(r["macs"]), str(r["solver"]), str(r["status"]),
             _num(r["objective"]), _seconds(r["solve_time_s"]),
             "-" if r.get("mac_utilization") is None else f"{100 * r['mac_utilization']:.1f}%",
             "yes" if r["valid"] else "NO")
            for r in records]
    times = [r["solve_time_s"] for r in records if r["solve_time_s"] is not None]
    valid = sum(r["valid"] for r in records)
    rows.append(("total", "", str(sum(r["macs"] for r in records)), "", "", "",
                 _seconds(sum(times) if times else None), "", f"{valid}/{len(records)}"))
    widths = [max(len(h), *(len(row[c]) for row in rows)) for c, h in enumerate(headers)]
    numeric = {2, 5, 6, 7}

    def fmt(row):
        return "  ".join(cell.rjust(w) if c in numeric else cell.ljust(w)
                         for c, (cell, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])])
