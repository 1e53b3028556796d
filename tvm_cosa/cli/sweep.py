"""`tvm-cosa sweep`: schedule models on every configuration of a design space.

    tvm-cosa sweep MODEL [MODEL ...] --space SPACE.yaml --out DIR [--jobs N] [--ray[=ADDRESS]]

MODEL: an ONNX file (needs the tvm extra), a layer YAML file, or a directory of layer YAML files.
Writes DIR/results.csv (one row per configuration and model) and DIR/pareto.png, and prints the
Pareto-optimal configurations. Without --ray the tasks run in a local pool of --jobs processes;
--ray starts a local Ray runtime with --jobs CPUs, --ray=ADDRESS joins a running cluster (the
tvm_cosa package must be installed on its nodes). Finished tasks are kept in the schedule cache:
run the same command again after an interruption and only what is missing is solved.
"""

from __future__ import annotations

import sys

import click

from ..errors import CoSAError

SOLVERS = ("auto", "highs", "gurobi")


@click.command("sweep")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option("--space", "space_path", required=True, type=click.Path(dir_okay=False),
              metavar="SPACE.yaml", help="Base architecture and parameter lists.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              metavar="DIR", help="Where results.csv and pareto.png go.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Local worker processes (with --ray: CPUs of the local Ray runtime).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="Run the tasks on Ray: alone, a local runtime; =ADDRESS (e.g. auto, "
                   "HOST:6379), an existing cluster. Needs pip install 'tvm_cosa[ray]'.")
@click.option("--solver", type=click.Choice(SOLVERS), default="auto", show_default=True)
@click.option("--evaluate", type=click.Choice(("builtin", "timeloop")), default="builtin",
              show_default=True, help="Cost model of each schedule: the built-in one (equal to "
                                      "Timeloop) or timeloop-model on the workers.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Per-layer solver time limit [default: 2.5, and on "
                                      "until a first schedule; inf: prove optimality].")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Schedule cache directory [default: $TVM_COSA_CACHE or ~/.cache/tvm_cosa].")
@click.option("--no-cache", is_flag=True,
              help="Neither read nor write the schedule cache (no resume).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Times a task is retried when its worker dies.")
def sweep(models, space_path, out_dir, jobs, ray_address, solver, evaluate, time_limit,
          cache_dir, no_cache, retries):
    """Sweep MODEL(s) over the configurations of SPACE.yaml; report the Pareto front."""
    from ..dse import sweep as run_sweep

    ray = None if ray_address is None else (True if ray_address == "local" else ray_address)
    try:
        result = run_sweep(list(models), space_path, out=out_dir, jobs=jobs, ray=ray,
                           solver=solver, evaluate=evaluate, time_limit=time_limit,
                           cache=False if no_cache else cache_dir, max_retries=retries,
                           progress=sys.stderr.isatty())
    except CoSAError as err:
        raise click.ClickException(str(err)) from None
    s = result.stats
    click.echo(f"{s['configurations']} configurations x {s['models']} model(s), "
               f"{s['unique_layers']} unique layers: {s['tasks']} tasks, {s['cached']} from the "
               f"cache, {s['solved']} solved"
               + (f" on {s['backend']}" if s['solved'] else "") + f" in {s['wall_s']:.1f} s"
               + (f", {s['retried']} retried after a worker died" if s['retried'] else "")
               + (f", {s['worker_failures']} lost with their workers" if s['worker_failures']
                  else ""))
    click.echo(result.table())
    click.echo(f"results: {result.out / 'results.csv'}  plot: {result.out / 'pareto.png'}  "
               "(area: an estimate, see tvm_cosa/dse/area.py)")
