"""The Gemmini flow: the steps `tvm-cosa verify`, `tvm-cosa compile --arch gemmini`, the examples
and the tests share, from a Relax module to outputs computed on the functional model.

    mod = import_onnx(model)                                   # tvm_cosa.relax.frontend
    compiled = compile_module(mod, "gemmini")                  # GemminiPrepare + CoSAPass
    runner = load(compiled.mod, compiled.config)               # c target, gcc, functional model
    outputs = runner(feed)                                     # GemminiError on a model error
    print(counts_table(runner.model, compiled.report))         # commands and bytes per operator
    ok, text = compare(outputs, run_onnxruntime(model, feed), tolerance=1e-4)

The same with the passes spelled out (what `compile_module` does for the preset):

    cosa = CoSAPass("gemmini")          # the element type follows the module (int8 / float32)
    mod = tvm.transform.Sequential([GemminiPrepare(16), cosa])(mod)
    runner = load(mod, config_for(cosa.arch))
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import InputError
from .config import DTYPES, GemminiConfig, config_for

AUTO = "auto"


def base_config(arch="gemmini") -> GemminiConfig:
    """The Gemmini configuration `arch` describes: the preset name, an architecture YAML, a
    Gemmini Architecture, a GemminiConfig or an array width."""
    if isinstance(arch, (str, os.PathLike)) and str(arch) != "gemmini":
        from ...architecture_yaml import load_architecture

        arch = load_architecture(arch)
    return config_for(arch)


@dataclass
class Compiled:
    """A module prepared, scheduled and lowered for Gemmini."""

    mod: object  # tvm.IRModule
    config: GemminiConfig
    report: object  # tvm_cosa.relax.report.Report


def matched_config(prepared_mod, arch="gemmini", dtype: str = AUTO) -> GemminiConfig:
    """`arch`'s configuration with the element type of the (prepared) module's conv2d / matmul
    operands (`dtype="auto"`: int8 if it has int8 ones, else float32) or the one given."""
    from .prepare import gemmini_dtype

    if dtype != AUTO and dtype not in DTYPES:
        raise InputError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {dtype!r}",
                         field="dtype")
    return replace(base_config(arch), dtype=gemmini_dtype(prepared_mod) if dtype == AUTO
                   else dtype)


def compile_module(mod, arch="gemmini", *, dtype: str = AUTO, requant: bool = True,
                   **cosa_options) -> Compiled:
    """GemminiPrepare, then CoSAPass for the configuration matched to the module's element type
    (`matched_config`), then (`requant=True`) each int8 requantization Gemmini computes exactly
    folded into its operator (relax/fuse_requant.py; the report's notes say which).
    `cosa_options` go to CoSAPass (solver, check, cache, jobs, ...)."""
    from ...relax.pass_ import CoSAPass
    from .prepare import GemminiPrepare

    base = base_config(arch)
    mod = GemminiPrepare(base)(mod)
    config = matched_config(mod, base, dtype)
    cosa = CoSAPass(config.architecture(), **cosa_options)
    mod = cosa(mod)
    how = "matched to the module" if dtype == AUTO else "as asked"
    cosa.report.arch_note = f"Gemmini configuration with {config.dtype} operands, {how}"
    if requant and cosa.lower:
        from ...relax.fuse_requant import fuse_requant

        mod, fusions = fuse_requant(mod)
        if fusions.fusions:
            cosa.report.notes.append(fusions.text())
    return Compiled(mod, config, cosa.report)


class GemminiModule:
    """A model built into a shared library that holds its own copy of the functional model of
    its configuration (so models for several configurations can live in one process)."""

    def __init__(self, vm, model, config: GemminiConfig, library: Path):
        self.vm = vm  # relax.VirtualMachine
        self.model = model  # FunctionalModel: counters, status, error message
        self.config = config
        self.library = library  # the file it was loaded from (removed when it was temporary)

    def __call__(self, feed: dict) -> list:
        """Outputs on `feed` (inputs in the model's order); counters start from zero. Raises
        GemminiError with the functional model's message if it stopped on an error."""
        from ...relax.frontend import run_tvm
        from .functional import GemminiError

        self.model.reset()
        try:
            outputs = run_tvm(self.vm, feed)
        except Exception as err:  # noqa: BLE001 - a TVM error raised by the generated code
            detail = self.model.error_message or f"{type(err).__name__}: {str(err).strip()[-300:]}"
            raise GemminiError(f"the model failed on the functional model: {detail}") from None
        self.model.check()
        return outputs


def load(mod, config: GemminiConfig, *, target: str = "c",
         path: Optional[os.PathLike] = None) -> GemminiModule:
    """Build `mod` (or a built executable) for `target` into a shared library linked with the
    functional model of `config`, and load it. The library is written to `path`, or to a
    temporary file removed once loaded (a loaded library does not need its file)."""
    from . import codegen

    def build_and_open(library):
        codegen.export(mod, config, library, target)
        return GemminiModule(*codegen.load(library, config), config, Path(library))

    if path is not None:
        return build_and_open(Path(path))
    with tempfile.TemporaryDirectory(prefix="tvm_cosa_gemmini_") as tmp:
        # a new file name each time: the dynamic loader returns a loaded library of the same path
        return build_and_open(Path(tmp) / f"{uuid.uuid4().hex}.so")


def compare(got, want, tolerance: float) -> tuple[bool, str]:
    """Integer outputs must be equal; float outputs within `tolerance` relative error (to the
    largest |value| of each output). Returns (all good, one line per output)."""
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


def placement(report) -> str:
    """Which conv2d / matmul layers run on the array, and why the others run on the CPU."""
    on_cpu = [r for r in report.records if r.lowering != "gemmini"]
    n = len(report.records) - len(on_cpu)
    lines = [f"on the Gemmini array: {n} of {len(report.records)} conv2d / matmul layers"]
    for r in on_cpu:
        why = r.reason or r.status
        lines.append(f"  on the CPU: #{r.index} {r.op} {r.shape} ({r.lowering or r.status}): "
                     f"{why}")
    return "\n".join(lines)


COUNT_COLUMNS = ("calls", "config", "mvin", "mvin_acc", "mvout", "preload", "compute_preloaded",
                 "compute_accumulated", "fence", "bytes_in", "bytes_out", "macs",
                 "spad_rows_used", "acc_rows_used")


def counts_table(model, report=None) -> str:
    """Commands and bytes per Gemmini operator (one row per lowered PrimFunc: the layers of one
    shape share it; `calls` counts them) and in total, from the functional model's counters."""
    from .lowering import OP_REGISTRY

    records = report.records if report else []
    kernel_of = {r.index: r.kernel for r in records if r.lowering == "gemmini" and r.kernel}
    rows = []
    for op_id in model.op_ids():
        info = OP_REGISTRY.get(op_id, {})
        kernel = kernel_of.get(info.get("index"))  # the layers calling the lowered function
        layers = [i for i, k in kernel_of.items() if kernel and k == kernel]
        where = ",".join(f"#{i}" for i in layers) or f"id {op_id}"
        label = f"{where} {info.get('kind', '')} {info.get('shape', '')}"
        if info.get("requant"):  # one operator per scale / ReLU of the layers of this shape
            r = info["requant"]
            label += f" -> int8 x{r['scale']:.6g}{' relu' if r['relu'] else ''}"
        rows.append((label, model.counters(op_id)))
    rows.append(("total", model.counters()))
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
