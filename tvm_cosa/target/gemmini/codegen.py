"""Build a Relax module lowered for Gemmini with TVM's `c` target, against the functional model.

`export(mod, config, path)` compiles every PrimFunc to C (`tvm.compile(target="c")`) and links the
result with gcc against the functional model of `config` (functional.build_library), so the Gemmini
calls of the accelerated operators run on the CPU model. `load(path, config)` opens it in a Relax
VM together with the FunctionalModel that reads its counters. `emit_c(exe_or_mod, out_dir,
config)` writes the C sources, the functional model and a Makefile that builds the same library.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import isa
from .config import GemminiConfig
from .functional import FunctionalModel, link_options, source_dir

TARGET = "c"


def compile_c(mod, target=TARGET):
    """The Relax VM executable of `mod` with every PrimFunc compiled to C (or `target`)."""
    import tvm

    from .vm import without_functional_model

    if not hasattr(mod, "functions"):
        return mod  # already an executable
    # the builds here link their own copy of the model (link_options / the Makefile)
    return tvm.compile(without_functional_model(mod), target=target)


def _links_model(exe) -> bool:
    """Whether a built executable already holds the functional model (tvm.compile of a module
    CoSAPass lowered onto Gemmini links it in as a static library)."""
    return bool(exe.mod._collect_from_import_tree(lambda m: m.kind == "static_library"))


def export(mod_or_exe, config: GemminiConfig, path, target=TARGET) -> Path:
    """A loadable shared library of the model, its Gemmini calls bound to the functional model
    (its own copy: see functional.link_options). `target`: c (gcc compiles the operators) or
    llvm."""
    exe = compile_c(mod_or_exe, target)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = link_options(config)
    if _links_model(exe):  # only its headers: the executable holds its model already
        options = [o for o in options if o.startswith("-I") or o.startswith("-Wl")]
    exe.export_library(str(path), options=options + isa.C_INCLUDE_OPTIONS, cc="gcc")
    return path


def load(path, config: GemminiConfig):
    """(Relax VirtualMachine, FunctionalModel) of an exported model."""
    import tvm
    from tvm import relax

    lib = tvm.runtime.load_module(str(path))
    vm = relax.VirtualMachine(lib, tvm.cpu())
    return vm, FunctionalModel(config, library=path)


MAKEFILE = """\
# Builds {library} from the C that TVM generated for the model and the Gemmini functional model.
# Load it with tvm.runtime.load_module("{library}") and run it in a relax.VirtualMachine.
# The operators' C calls the ISA of gemmini.h (macros in Gemmini's own gemmini.h, functions in
# the functional model's): every source is compiled with -include gemmini.h. To build them for a
# Gemmini SoC instead, compile with Gemmini's SDK first on the include path (gemmini-cc -c ...).
CC = gcc
TVM_INCLUDES = {includes}
CFLAGS ?= -O2

{library}: {sources} gemmini_func.o
\t$(CC) -shared -fPIC $(CFLAGS) $(TVM_INCLUDES) -I. -include gemmini.h -o $@ {sources} gemmini_func.o -Wl,-Bsymbolic

gemmini_func.o: gemmini_func.c gemmini.h gemmini_params.h
\t$(CC) -std=c99 $(CFLAGS) -Wall -fPIC -c gemmini_func.c -o $@

clean:
\trm -f {library} gemmini_func.o
"""

README = """\
C sources of {name}, compiled by tvm_cosa for {config}.

{sources}: TVM's c target output: every operator as a C function; the ones lowered onto
  Gemmini call the ISA declared in gemmini.h (gemmini_extended_mvin, _preload, _compute_*, ...).
  devc.c, when present, is the Relax VM bytecode and constants packed as a C array.
gemmini.h, gemmini_params.h, gemmini_func.c: the ISA and its functional model for this
  configuration (DIM {dim}, {spad} scratchpad rows, {acc} accumulator rows, {dtype}).
Makefile: `make` builds {library} with gcc; load it with TVM's runtime:
    lib = tvm.runtime.load_module("{library}"); vm = tvm.relax.VirtualMachine(lib, tvm.cpu())
"""


def emit_c(exe_or_mod, out_dir, config: GemminiConfig, *, library: str = "model.so",
           name: str = "model") -> dict:
    """Write the model's C sources, the functional model and a Makefile into `out_dir`.

    Returns {"dir", "sources", "makefile", "library"}. `make -C out_dir` builds the library that
    `load()` opens (the same as `export()` builds directly).
    """
    import tvm

    exe = compile_c(exe_or_mod)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_src = source_dir(config)
    for file in ("gemmini.h", "gemmini_params.h", "gemmini_func.c"):
        shutil.copyfile(model_src / file, out / file)
    written = {}

    def pack_imports_c(module, is_system_lib, prefix, workspace_dir):
        path = Path(workspace_dir) / f"{prefix}devc.c"
        path.write_text(tvm.runtime._ffi_api.ModulePackImportsToC(module, is_system_lib, prefix))
        return str(path)

    def write_makefile(output, files, **kwargs):
        sources = [Path(f).name for f in files]
        includes = " ".join(o for o in kwargs.get("options", []) if o.startswith("-I"))
        (out / "Makefile").write_text(MAKEFILE.format(library=library, includes=includes,
                                                      sources=" ".join(sources)))
        (out / "README.txt").write_text(README.format(
            name=name, config=config.name, sources=", ".join(sources), dim=config.dim,
            spad=config.spad_rows, acc=config.acc_rows, dtype=config.dtype, library=library))
        written["sources"] = [out / s for s in sources]

    exe.mod.export_library(str(out / library), fcompile=write_makefile, workspace_dir=str(out),
                           fpack_imports=pack_imports_c)
    return {"dir": out, "sources": written["sources"], "makefile": out / "Makefile",
            "library": out / library}
