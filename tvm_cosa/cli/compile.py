"""`tvm-cosa compile`: compile an ONNX model with CoSAPass and print the per-layer report.

    tvm-cosa compile MODEL.onnx --arch gemmini [--report FILE.json] [--csv FILE.csv]
        [--plot FILE.png] [--verify] [--layout NHWC] [--dtype auto|int8|float32]
        [--input-shape NAME=1,3,224,224] [--emit-c DIR]

The model is imported into TVM (Relax), every conv2d and matmul is scheduled with CoSA for the
architecture and lowered to TIR, and the module is built for llvm. For a Gemmini architecture the
steps are those of `tvm-cosa verify` (target.gemmini.flow): the graph is prepared (NHWC, channels
padded to the array width, int8 casts folded), scheduled for the configuration whose element type
matches the model (--dtype), lowered onto the ISA and built with the c target against the
functional model. With --verify the built module runs on seeded random inputs and its outputs are
compared with onnxruntime's. --emit-c writes the C code of a Gemmini compile with the functional
model and a Makefile. A layer that cannot be scheduled keeps TVM's default schedule and is marked
in the report; the compile goes on, and the fallbacks are summed up after the table. The command
exits non-zero when the asked solver or checker is not installed, or when no layer was scheduled.
"""

from __future__ import annotations

import sys
import time

import click

from ..errors import CoSAError, InputError
from .common import (fallback_summary, fallback_warnings_collected, require_check,
                     require_scheduled, require_solver)

SOLVERS = ("auto", "highs", "gurobi")
CHECKS = ("auto", "timeloop", "builtin", "none")


def _parse_shapes(values) -> dict:
    shapes = {}
    for text in values:
        name, sep, dims = text.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
            if any(d < 1 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected NAME=D1,D2,... with positive sizes",
                                     param_hint="--input-shape") from None
    return shapes


@click.command("compile")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", "arch_spec", required=True, metavar="{gemmini|simba|ARCH.yaml}",
              help="A preset name or an architecture YAML file.")
@click.option("--mapspace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Timeloop mapspace / constraints file (bypass: what each level keeps).")
@click.option("--solver", type=click.Choice(SOLVERS), default="auto", show_default=True)
@click.option("--check", type=click.Choice(CHECKS), default="auto", show_default=True,
              help="How each schedule is checked: Timeloop when installed (auto), Timeloop, "
                   "the built-in model, or not at all.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Schedule cache directory [default: $TVM_COSA_CACHE or ~/.cache/tvm_cosa].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the schedule cache.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes solving layers in parallel.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Per-layer solver time limit [default: 2.5, and on "
                                      "until a first schedule; inf: prove optimality].")
@click.option("--layout", type=click.Choice(("NCHW", "NHWC")), default=None,
              help="Convert convolutions to this layout before scheduling [default: as "
                   "imported; NHWC for Gemmini, whose preparation converts them].")
@click.option("--dtype", type=click.Choice(("auto", "int8", "float32")), default="auto",
              show_default=True,
              help="Gemmini: element type of the configuration (auto: int8 if the model has int8 "
                   "convolutions or matmuls, else float32).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D1,D2,...",
              help="Static shape of a model input (dynamic dimensions default to 1).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.json", help="Save the report as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.csv", help="Save the report as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.png", help="Plot cycles per layer against the lower bound.")
@click.option("--build/--no-build", default=True, show_default=True,
              help="Build the scheduled module (llvm; Gemmini: the c target with gcc, against "
                   "the functional model).")
@click.option("--verify", is_flag=True,
              help="Run the built module and compare its outputs with onnxruntime's.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest relative error --verify accepts (float32).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), default=None,
              metavar="LIB.so", help="Export the built module as a shared library.")
@click.option("--emit-c", "emit_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Gemmini: write the model's C sources, the functional model "
                                  "and a Makefile to DIR (TVM's c target).")
def compile_(model, arch_spec, mapspace, solver, check, cache_dir, no_cache, jobs, time_limit,
             layout, dtype, input_shapes, report_path, csv_path, plot_path, build, verify,
             tolerance, export_path, emit_dir):
    """Compile MODEL (ONNX) with CoSAPass for an accelerator and print the per-layer report."""
    from ..architecture_yaml import load_architecture
    from ..relax import frontend

    require_solver(solver)
    require_check(check)
    options = dict(solver=solver, check=None if check == "none" else check,
                   cache=False if no_cache else cache_dir, jobs=jobs, time_limit=time_limit,
                   progress=sys.stderr.isatty())
    try:
        arch = load_architecture(arch_spec, mapspace=mapspace)
        gemmini = _is_gemmini(arch)
        _check_target_options(arch, gemmini, layout, dtype, emit_dir)
        onnx_model = frontend.load_onnx(model)
        shapes = _parse_shapes(input_shapes)
        started = time.perf_counter()
        mod = frontend.import_onnx(onnx_model, shapes)
        with fallback_warnings_collected():
            if gemmini:
                from ..target.gemmini import flow

                compiled = flow.compile_module(mod, arch, dtype=dtype, **options)
                mod, report, config = compiled.mod, compiled.report, compiled.config
            else:
                mod, report = frontend.compile_model(mod, arch, layout=layout, **options)
    except CoSAError as err:
        raise click.ClickException(err.cli_message({"backend": "--check"})) from None
    click.echo(report.table())
    summary = fallback_summary(report)
    if summary:
        click.echo(summary)
    _save(report, report_path, csv_path, plot_path)
    require_scheduled(report, arch)
    if emit_dir:
        _emit_c(mod, config, emit_dir)
    if not (build or verify or export_path):
        return
    if gemmini:
        runner = flow.load(mod, config, path=export_path)
        click.echo(f"built with the c target and gcc against the functional model of "
                   f"{config.name} in {time.perf_counter() - started:.1f} s (import, prepare, "
                   "schedule, lower, build)")
    else:
        runner = frontend.build(mod, path=export_path)
        click.echo(f"built for llvm in {time.perf_counter() - started:.1f} s (import, schedule, "
                   "lower, build)")
    if export_path:
        click.echo(f"exported {export_path}")
    if verify:
        _verify(onnx_model, runner, shapes, tolerance, report if gemmini else None)


def _is_gemmini(arch) -> bool:
    from ..relax.pass_ import target_lowering

    return target_lowering(arch) is not None


def _check_target_options(arch, gemmini, layout, dtype, emit_dir):
    if emit_dir and not gemmini:
        raise InputError(f"--emit-c writes C for the Gemmini target; {arch.name} is not a "
                         "Gemmini architecture", field="--emit-c")
    if dtype != "auto" and not gemmini:
        raise InputError(f"--dtype chooses the Gemmini configuration's element type; {arch.name} "
                         "is not a Gemmini architecture", field="--dtype")
    if layout == "NCHW" and gemmini:
        raise InputError("Gemmini's preparation puts convolutions in NHWC / HWIO (the layouts "
                         "its scratchpad rows take); leave --layout out or use NHWC",
                         field="--layout")


def _save(report, report_path, csv_path, plot_path):
    try:
        if report_path:
            click.echo(f"report: {report.to_json(report_path)}")
        if csv_path:
            click.echo(f"csv: {report.to_csv(csv_path)}")
        if plot_path:
            report.plot(plot_path)
            click.echo(f"plot: {plot_path}")
    except (OSError, CoSAError) as err:
        raise click.ClickException(f"could not write the report: {err}") from None


def _emit_c(mod, config, emit_dir):
    from ..target.gemmini.codegen import emit_c

    try:
        written = emit_c(mod, emit_dir, config)
    except (OSError, CoSAError) as err:
        raise click.ClickException(f"could not write the C sources: {err}") from None
    click.echo(f"C sources: {', '.join(p.name for p in written['sources'])} and Makefile in "
               f"{written['dir']} for {config.name} (make -C {written['dir']})")


def _verify(onnx_model, runner, shapes, tolerance, gemmini_report=None):
    """Run on seeded inputs and compare with onnxruntime (Gemmini: on the functional model,
    with its command counts)."""
    from ..relax import frontend

    feed = frontend.seeded_feed(onnx_model, 0, shapes)
    try:
        if gemmini_report is not None:
            from ..target.gemmini import flow

            got = runner(feed)
            click.echo(flow.counts_table(runner.model, gemmini_report))
        else:
            got = frontend.run_tvm(runner, feed)
        err = frontend.max_rel_error(got, frontend.run_onnxruntime(onnx_model, feed))
    except (CoSAError, ValueError) as exc:
        raise click.ClickException(f"verification could not run: {exc}") from None
    verdict = "OK" if err <= tolerance else "MISMATCH"
    click.echo(f"verify against onnxruntime: max relative error {err:.2e} "
               f"(tolerance {tolerance:g}) {verdict}")
    if err > tolerance:
        raise click.ClickException("outputs differ from onnxruntime beyond the tolerance")
