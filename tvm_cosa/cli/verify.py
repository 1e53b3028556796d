"""`tvm-cosa verify`: compile an ONNX model for Gemmini, run it on the functional model, compare.

    tvm-cosa verify MODEL.onnx --arch gemmini [--dtype auto|int8|float32] [--seed 0]
        [--tolerance 1e-4] [--emit-c DIR] [--input-shape NAME=1,3,224,224]
        [--simulator functional|spike] [--spike PATH] [--gemmini-sdk DIR] [--spike-jobs 2]

Steps (target.gemmini.flow): import the model into Relax; fold int8 casts, convert convolutions
to NHWC/HWIO and pad channels to the array width (GemminiPrepare); CoSAPass schedules every
conv2d / matmul for the Gemmini configuration whose element type matches the model (--dtype)
and lowers each onto its ISA (layers it cannot take run on the CPU, listed); TVM's c target
writes C that gcc links against the functional model; the model runs in TVM's VM on seeded random
inputs and is compared with onnxruntime: integer outputs must be equal, float outputs within the
relative tolerance. Prints the error, the per-layer report and the Gemmini command and byte counts
per operator; exits non-zero on a mismatch or a functional-model error.

With `--simulator spike`, each Gemmini-lowered operator's C (TVM's c target) is also built for
RISC-V bare metal against Gemmini's own gemmini.h (`--gemmini-sdk DIR`, $GEMMINI_ROCC_TESTS or
../shared/gemmini-spike/sdk) with a harness holding its inputs from the seeded run, run under
`spike --extension=gemmini` (`--spike PATH`, or spike on PATH), and compared with the functional
model's and numpy's outputs of that operator: a table per operator and a summary (target.gemmini
.spike). The SDK's gemmini_params.h must be the model's configuration.
"""

from __future__ import annotations

import sys
import time

import click

from ..errors import CoSAError
from .compile import CHECKS, SOLVERS, _parse_shapes


@click.command("verify")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", "arch_spec", default="gemmini", show_default=True,
              metavar="{gemmini|ARCH.yaml}",
              help="The Gemmini preset or a Gemmini-like architecture YAML file.")
@click.option("--dtype", type=click.Choice(("auto", "int8", "float32")), default="auto",
              show_default=True,
              help="Element type of the Gemmini configuration (auto: int8 if the model has int8 "
                   "convolutions or matmuls, else float32).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest relative error accepted on float outputs (integers must be equal).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D1,D2,...",
              help="Static shape of a model input (dynamic dimensions default to 1).")
@click.option("--solver", type=click.Choice(SOLVERS), default="auto", show_default=True)
@click.option("--check", type=click.Choice(CHECKS), default="builtin", show_default=True,
              help="How each schedule is checked before lowering.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Schedule cache directory.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the schedule cache.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--emit-c", "emit_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Also write the C sources and their Makefile to DIR.")
@click.option("--simulator", type=click.Choice(("functional", "spike")), default="functional",
              show_default=True,
              help="spike: also run every Gemmini operator on Gemmini's own simulator.")
@click.option("--spike", "spike_path", type=click.Path(dir_okay=False), default=None,
              help="Spike built with libgemmini (default: spike on PATH).")
@click.option("--gemmini-sdk", "sdk_dir", type=click.Path(file_okay=False), default=None,
              help="Gemmini's SDK: a gemmini-rocc-tests checkout (default: $GEMMINI_ROCC_TESTS).")
@click.option("--spike-jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Operators run on Spike at once.")
@click.option("--keep-programs", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Keep the Spike programs (sources, data, binaries) in DIR.")
def verify(model, arch_spec, dtype, seed, tolerance, input_shapes, solver, check, cache_dir,
           no_cache, jobs, emit_dir, simulator, spike_path, sdk_dir, spike_jobs, keep_programs):
    """Run MODEL (ONNX) compiled for Gemmini on the functional model and compare with
    onnxruntime."""
    from ..relax import frontend
    from ..target.gemmini import codegen, flow

    started = time.perf_counter()
    shapes = _parse_shapes(input_shapes)
    try:
        onnx_model = frontend.load_onnx(model)
        compiled = flow.compile_module(
            frontend.import_onnx(onnx_model, shapes), arch_spec, dtype=dtype, solver=solver,
            check=None if check == "none" else check, cache=False if no_cache else cache_dir,
            jobs=jobs, progress=sys.stderr.isatty())
    except CoSAError as err:
        raise click.ClickException(str(err)) from None
    report, config = compiled.report, compiled.config
    toolchain = None
    if simulator == "spike":  # refuse a missing simulator or another configuration up front
        from ..target.gemmini import sdk

        try:
            toolchain = sdk.find_toolchain(sdk_dir, spike_path)
            toolchain.check_config(config)
        except CoSAError as err:
            raise click.ClickException(str(err)) from None
    click.echo(report.table())
    click.echo(flow.placement(report))
    runner = flow.load(compiled.mod, config)
    click.echo(f"built with the c target and gcc against the functional model of "
               f"{config.name} in {time.perf_counter() - started:.1f} s")
    if emit_dir:
        click.echo(f"C sources: {codegen.emit_c(compiled.mod, emit_dir, config)['dir']}")
    feed = frontend.seeded_feed(onnx_model, seed, shapes)
    try:
        got = runner(feed)
    except CoSAError as err:
        raise click.ClickException(str(err)) from None
    click.echo(flow.counts_table(runner.model, report))
    ok, text = flow.compare(got, frontend.run_onnxruntime(onnx_model, feed), tolerance)
    click.echo(text)
    spike_ok = True
    if toolchain is not None:
        spike_ok = _run_on_spike(runner, compiled, feed, toolchain, spike_jobs, keep_programs)
    if not ok:
        raise click.ClickException("outputs differ from onnxruntime")
    if not spike_ok:
        raise click.ClickException("an operator's output on Spike differs")


def _run_on_spike(runner, compiled, feed, toolchain, jobs, workdir) -> bool:
    """Every Gemmini operator of the seeded run on Spike; prints the table and the summary."""
    from ..target.gemmini import spike

    started = time.perf_counter()
    operators = spike.capture(runner, compiled.mod, feed)
    click.echo(f"running {len(operators)} Gemmini operators "
               f"({sum(len(o.calls) for o in operators)} calls) on {toolchain.spike} ...")

    def progress(result):
        click.echo(f"  {result.operator.name}: {'exact' if result.ok else 'MISMATCH'} "
                   f"({result.seconds:.1f} s)", err=True)

    results = spike.run_on_spike(operators, compiled.config, toolchain=toolchain, jobs=jobs,
                                 workdir=workdir, progress=progress)
    click.echo(spike.results_table(results))
    click.echo(spike.summary(results, time.perf_counter() - started))
    return all(r.ok for r in results)
