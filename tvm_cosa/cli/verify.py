"""`tvm-cosa verify`: compile an ONNX model for Gemmini, run it on the functional model, compare.

    tvm-cosa verify MODEL.onnx --arch gemmini [--dtype auto|int8|float32] [--seed 0]
        [--tolerance 1e-4] [--emit-c DIR] [--input-shape NAME=1,3,224,224]

Steps: import the model into Relax; fold int8 casts and convert convolutions to NHWC/HWIO
(target.gemmini.prepare); CoSAPass schedules every conv2d / matmul for the Gemmini configuration
and lowers each onto its ISA (layers it cannot take run on the CPU, listed); TVM's c target
writes C that gcc links against the functional model; the model runs in TVM's VM on seeded random
inputs and is compared with onnxruntime: integer outputs must be equal, float outputs within the
relative tolerance. Prints the error, the per-layer report and the Gemmini command and byte counts
per operator; exits non-zero on a mismatch or a functional-model error.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from ..errors import CoSAError
from .compile import CHECKS, SOLVERS, _parse_shapes

COUNT_COLUMNS = ("calls", "config", "mvin", "mvin_acc", "mvout", "preload", "compute_preloaded",
                 "compute_accumulated", "fence", "bytes_in", "bytes_out", "macs",
                 "spad_rows_used", "acc_rows_used")


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
def verify(model, arch_spec, dtype, seed, tolerance, input_shapes, solver, check, cache_dir,
           no_cache, jobs, emit_dir):
    """Run MODEL (ONNX) compiled for Gemmini on the functional model and compare with
    onnxruntime."""
    from ..relax import frontend
    from ..target.gemmini import codegen
    from ..target.gemmini.functional import GemminiError

    started = time.perf_counter()
    try:
        onnx_model = frontend.load_onnx(model)
        mod = frontend.import_onnx(onnx_model, _parse_shapes(input_shapes))
        mod, config, arch = _prepare(mod, arch_spec, dtype)
        mod, report = frontend.compile_model(
            mod, arch, solver=solver, check=None if check == "none" else check,
            cache=False if no_cache else cache_dir, jobs=jobs, progress=sys.stderr.isatty())
    except CoSAError as err:
        raise click.ClickException(str(err)) from None
    click.echo(report.table())
    _echo_placement(report)
    with tempfile.TemporaryDirectory(prefix="tvm_cosa_verify_") as tmp:
        library = codegen.export(mod, config, Path(tmp) / "model.so")
        click.echo(f"built with the c target and gcc against the functional model of "
                   f"{config.name} in {time.perf_counter() - started:.1f} s")
        if emit_dir:
            click.echo(f"C sources: {codegen.emit_c(mod, emit_dir, config)['dir']}")
        vm, fm = codegen.load(library, config)
        fm.reset()
        feed = _feed(onnx_model, seed, input_shapes)
        try:
            got = _run(vm, feed)
        except Exception as err:  # noqa: BLE001 - a TVM error raised by the generated code
            detail = fm.error_message or f"{type(err).__name__}: {str(err).strip()[-300:]}"
            raise click.ClickException(f"the model failed on the functional model: {detail}")
        try:
            fm.check()
        except GemminiError as err:
            raise click.ClickException(str(err)) from None
        click.echo(counts_table(fm, report))
        want = frontend.run_onnxruntime(onnx_model, feed)
    ok, text = compare(got, want, tolerance)
    click.echo(text)
    if not ok:
        raise click.ClickException("outputs differ from onnxruntime")


def _prepare(mod, arch_spec, dtype):
    from dataclasses import replace

    from ..architecture_yaml import load_architecture
    from ..target.gemmini.config import config_for
    from ..target.gemmini.prepare import gemmini_dtype, prepare_module

    base = config_for(load_architecture(arch_spec))
    mod = prepare_module(mod, base.dim)
    config = replace(base, dtype=gemmini_dtype(mod) if dtype == "auto" else dtype)
    return mod, config, config.architecture()


def _feed(onnx_model, seed, input_shapes):
    from ..models import input_feed
    from ..relax.frontend import input_shapes as shapes_of

    feed = input_feed(onnx_model, seed=seed)
    shapes = shapes_of(onnx_model, _parse_shapes(input_shapes))
    rng = np.random.default_rng(seed)
    for name, shape in shapes.items():  # inputs with dynamic dimensions: the shapes used
        if tuple(feed[name].shape) != tuple(shape):
            x = feed[name]
            feed[name] = (rng.integers(-8, 8, shape).astype(x.dtype)
                          if np.issubdtype(x.dtype, np.integer)
                          else rng.standard_normal(shape).astype(x.dtype))
    return feed


def _run(vm, feed):
    import tvm

    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in feed.values()])
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [o.numpy() for o in out]


def compare(got, want, tolerance) -> tuple[bool, str]:
    """Integer outputs must be equal; float outputs within `tolerance` relative error."""
    ok, lines = True, []
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return False, f"output {i}: shape {g.shape}, onnxruntime {w.shape}"
        err = np.abs(g.astype(np.float64) - w.astype(np.float64))
        if np.issubdtype(w.dtype, np.integer):
            good = bool((g == w).all())
            lines.append(f"output {i} ({w.dtype}): max abs error {err.max():.0f} "
                         f"({'exact' if good else 'MISMATCH'})")
        else:
            rel = float(err.max() / max(float(np.abs(w).max()), 1e-30))
            good = rel <= tolerance
            lines.append(f"output {i} ({w.dtype}): max relative error {rel:.2e} (tolerance "
                         f"{tolerance:g}) {'OK' if good else 'MISMATCH'}")
        ok &= good
    return ok, "\n".join(lines)


def _echo_placement(report):
    on_cpu = [r for r in report.records if r.lowering != "gemmini"]
    n = len(report.records) - len(on_cpu)
    click.echo(f"on the Gemmini array: {n} of {len(report.records)} conv2d / matmul layers")
    for r in on_cpu:
        why = r.reason or r.status
        click.echo(f"  on the CPU: #{r.index} {r.op} {r.shape} ({r.lowering or r.status}): {why}")


def counts_table(fm, report=None) -> str:
    """Commands and bytes per Gemmini operator (one row per lowered PrimFunc: the layers of one
    shape share it; `calls` counts them) and in total."""
    from ..target.gemmini.lowering import OP_REGISTRY

    rows = []
    for op_id in fm.op_ids():
        info = OP_REGISTRY.get(op_id, {})
        layers = [r.index for r in (report.records if report else [])
                  if r.lowering == "gemmini" and r.problem == info.get("problem")]
        where = ",".join(f"#{i}" for i in layers) or f"id {op_id}"
        label = f"{where} {info.get('kind', '')} {info.get('shape', '')}"
        rows.append((label, fm.counters(op_id)))
    rows.append(("total", fm.counters()))
    header = ("operator",) + COUNT_COLUMNS
    table = [header]
    for label, c in rows:
        c = dict(c, config=c["config_ex"] + c["config_ld"] + c["config_st"])
        table.append((label,) + tuple(str(c[k]) for k in COUNT_COLUMNS))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                       enumerate(zip(r, widths))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "Gemmini commands per operator (functional model):\n" + "\n".join(lines)
