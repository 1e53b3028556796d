"""`tvm-cosa evaluate`: cycles, energy and per-level access counts of one Timeloop mapping.

    tvm-cosa evaluate --arch {simba|gemmini|ARCH.yaml} PROB.yaml MAP.yaml
        [--backend builtin|timeloop|auto] [--json | --compare] [--timeloop PATH]

The three files are the ones timeloop-model takes (the map file carries its own bypass
entries; a level without one keeps every tensor, as in Timeloop). `--json` prints the result
with the keys and layout of Timeloop reference `summary.json` files; `--compare` runs the
built-in model and Timeloop and prints them side by side, marking every difference.
"""

from __future__ import annotations

import json
import sys

import click

from ..errors import CoSAError

NO_TIMELOOP = ("timeloop-model not found (PATH, $TIMELOOP_DIR or --timeloop): "
               "showing the built-in model only")


@click.command("evaluate")
@click.option("--arch", "arch_spec", required=True, metavar="{simba|gemmini|ARCH.yaml}",
              help="A preset name or the architecture file given to Timeloop.")
@click.option("--mapspace", type=click.Path(dir_okay=False), default=None,
              help="Mapspace file giving the bypass of levels that have no bypass entry in the "
                   "map file (without it such a level keeps every tensor, as in Timeloop).")
@click.option("--backend", type=click.Choice(["builtin", "timeloop", "auto"]), default="builtin",
              show_default=True, help="Built-in model, real timeloop-model, or Timeloop when "
                                      "installed.")
@click.option("--timeloop", "timeloop_path", type=click.Path(), default=None,
              help="timeloop-model binary or its folder (default: PATH, then $TIMELOOP_DIR).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON in the layout of Timeloop reference summary.json "
                   "(numbers rounded as timeloop-model prints them).")
@click.option("--compare", is_flag=True,
              help="Show the built-in model and Timeloop side by side.")
@click.argument("problem_path", type=click.Path(dir_okay=False), metavar="PROB.yaml")
@click.argument("mapping_path", type=click.Path(dir_okay=False), metavar="MAP.yaml")
def evaluate(arch_spec, mapspace, backend, timeloop_path, as_json, compare, problem_path,
             mapping_path):
    """Evaluate MAP.yaml for the layer PROB.yaml on an architecture, as Timeloop counts."""
    from ..architecture_yaml import load_architecture
    from ..check import check
    from ..timeloop import read_mapping, read_problem

    if as_json and compare:
        raise click.UsageError("--json and --compare are exclusive")
    try:
        arch = load_architecture(arch_spec, mapspace)
        problem = read_problem(problem_path)
        # As Timeloop: a level the map file gives no bypass entry keeps every tensor, unless
        # a mapspace says what it keeps.
        mapping = read_mapping(mapping_path, problem, arch, keep_unlisted=mapspace is None)
        if compare:
            click.echo(_compare(mapping, problem, arch, timeloop_path), nl=False)
            return
        result = check(mapping, problem, arch, backend=backend, timeloop=timeloop_path)
    except CoSAError as err:
        raise click.ClickException(err.cli_message()) from None
    if as_json:
        click.echo(json.dumps(result.to_summary(rounded=True), indent=1))
    else:
        click.echo(result.describe(), nl=False)
    if not result.valid:
        sys.exit(1)


def _compare(mapping, problem, arch, timeloop_path) -> str:
    from ..check import check, differences
    from ..timeloop import find_timeloop

    builtin = check(mapping, problem, arch, backend="builtin")
    if find_timeloop(timeloop_path) is None:
        click.echo(NO_TIMELOOP, err=True)
        return builtin.describe()
    real = check(mapping, problem, arch, backend="timeloop", timeloop=timeloop_path)
    return side_by_side(builtin, real, differences(builtin, real))


def side_by_side(a, b, diffs) -> str:
    """Two evaluations in columns; a '*' marks a row where they differ."""
    rows = [("", a.backend, b.backend)]
    if not (a.valid and b.valid):
        rows.append(("valid", a.error or "yes", b.error or "yes"))
    else:
        rows += [("cycles", a.cycles, b.cycles),
                 ("energy uJ", f"{a.energy_pJ / 1e6:.2f}", f"{b.energy_pJ / 1e6:.2f}"),
                 ("utilization", f"{a.utilization:.2f}", f"{b.utilization:.2f}")]
        other = {lv.name: lv for lv in b.levels}
        for lv in a.levels:
            ob = other.get(lv.name)
            rows.append((f"{lv.name} cycles", lv.cycles, ob.cycles if ob else "-"))
            for t, s in lv.tensors.items():
                so = ob.tensors.get(t) if ob else None
                for field in ("utilized_capacity", "utilized_instances", "reads", "fills",
                              "updates"):
                    rows.append((f"{lv.name}.{t}.{field}", getattr(s, field),
                                 getattr(so, field) if so else "-"))
                rows.append((f"{lv.name}.{t}.energy pJ", f"{s.energy_total_pJ:.2f}",
                             f"{so.energy_total_pJ:.2f}" if so else "-"))
    width = max(len(str(r[0])) for r in rows) + 2
    lines = []
    for name, x, y in rows:
        mark = "*" if name and str(x) != str(y) and not name.endswith("energy pJ") \
            and name != "energy uJ" else " "
        lines.append(f"{mark} {str(name):<{width}} {str(x):>16} {str(y):>16}")
    if a.energy_estimated:
        lines.append("energy: " + a.energy_label)
    lines.append("agree (counts exact, energy within 1%)" if not diffs
                 else "differences:\n  " + "\n  ".join(diffs))
    return "\n".join(lines) + "\n"
