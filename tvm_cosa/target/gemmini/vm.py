"""TVM's standard build for modules lowered onto Gemmini: `tvm.compile` + `relax.VirtualMachine`.

The operators CoSAPass lowers onto Gemmini call its ISA (`gemmini_extended_mvin`, ...). So that
the module runs where any TVM module runs, CoSAPass attaches the functional model of the
configuration it lowered for to the module (`attach_functional_model`), as an external static
library (`external_mods`, the attribute TVM's build links into the executable):

    mod = tvm.transform.Sequential([GemminiPrepare("gemmini"), CoSAPass("gemmini")])(mod)
    ex = tvm.compile(mod, target="llvm")           # or target="c"
    vm = relax.VirtualMachine(ex, tvm.cpu())       # the Executable links the functional model
    out = vm["main"](*inputs)
    ex.export_library("model.so")                  # self-contained: loads in any process

The object is compiled with protected symbols, so each built module calls its own copy (models
for several configurations can live in one process). Read its counters with
`FunctionalModel(config, library="model.so")` after loading an exported library.

Combinations that cannot run raise instead of crashing: relax.VirtualMachine(ex.mod, ...) (the
LLVM module JIT-compiled alone, without the linked model) finds the guard library
(runtime/gemmini_guard.c, loaded process-wide on the first Gemmini lowering) and fails with a
Python error and a hint; a build for another target (a cross compiler) links the host model
and fails at link time: strip it with `without_functional_model(mod)` and link the target's
own (`codegen.emit_c` writes the sources and a Makefile).
"""

from __future__ import annotations

from .config import GemminiConfig

CONFIG_ATTR = "gemmini.functional_model"  # the configuration whose model is attached
EXTERNAL_MODS = "external_mods"


def attach_functional_model(mod, config: GemminiConfig):
    """`mod` with the functional model of `config` in its `external_mods` (replacing one
    attached before), and the guard library loaded process-wide."""
    import tvm

    from .functional import build_protected_object, load_guard

    load_guard()
    library = tvm.runtime.load_static_library(str(build_protected_object(config)), [])
    mod = without_functional_model(mod)
    external = list(module_attr(mod, EXTERNAL_MODS) or [])
    mod = mod.with_attr(EXTERNAL_MODS, external + [library])
    return mod.with_attr(CONFIG_ATTR, config.name)


def attached_config(mod) -> str:
    """The name of the configuration whose model `mod` carries ("" if none)."""
    return str(module_attr(mod, CONFIG_ATTR) or "")


def without_functional_model(mod):
    """`mod` without the functional model attach_functional_model put in (for builds that link
    their own copy: flow.load, emit_c, a cross compiler)."""
    if module_attr(mod, CONFIG_ATTR) is None:
        return mod
    mod = mod.without_attr(CONFIG_ATTR)
    # ours is the static library; nothing else in TVM's CPU flow puts one there
    kept = [m for m in module_attr(mod, EXTERNAL_MODS) or [] if m.kind != "static_library"]
    mod = mod.without_attr(EXTERNAL_MODS)
    return mod.with_attr(EXTERNAL_MODS, kept) if kept else mod


def module_attr(mod, key):
    """The module attribute `key`, or None (IRModule.get_attr cannot return short strings)."""
    attrs = mod.attrs
    return attrs[key] if attrs is not None and key in attrs else None
