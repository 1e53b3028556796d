"""How the lowering emits Gemmini ISA calls into TIR so that TVM's C back end prints calls that
compile against Gemmini's real `gemmini.h` (where the ISA calls are macros) as well as against
tvm_cosa's functional model (where they are functions).

For `call_extern`, TVM's C back end writes a prototype of every callee at the top of the file
(`int32_t gemmini_extended_mvin(void*, int32_t, ...);`); with the real gemmini.h included, the
macro of the same name expands inside that prototype and the file does not compile. An intrinsic
`Op` whose `TGlobalSymbol` is the macro's name is printed as the same call, without a prototype.
So every gemmini.h command is such an Op (`tirx.gemmini.<macro name>`, registered on first use);
host-side helpers of the functional model (gemmini_begin_op, ...) stay ordinary `call_extern`s.

Private-memory addresses go out as uint32: gemmini.h ORs them into 64-bit operands, and a
negative int32 (the accumulator bit is bit 31) would sign-extend into the row / column fields.
The generated C must see a gemmini.h: compile it with `-include gemmini.h` (see
`C_INCLUDE_OPTIONS`).
"""

from __future__ import annotations

# gemmini.h command -> positions of its private-memory address operands (cast to uint32). A new
# command the lowering emits (e.g. gemmini_loop_ws) must be listed here, or TVM writes a
# prototype for it that breaks against the real gemmini.h.
COMMANDS = {
    "gemmini_flush": (),
    "gemmini_fence": (),
    "gemmini_extended_config_ex": (),
    "gemmini_extended3_config_ld": (),
    "gemmini_config_st": (),
    "gemmini_extended_config_st": (),
    "gemmini_extended_mvin": (1,),
    "gemmini_extended_mvin2": (1,),
    "gemmini_extended_mvin3": (1,),
    "gemmini_extended_mvout": (1,),
    "gemmini_extended_preload": (0, 1),
    "gemmini_extended_compute_preloaded": (0, 1),
    "gemmini_extended_compute_accumulated": (0, 1),
    "gemmini_loop_ws": (),  # DRAM pointers and block counts only
    "gemmini_loop_conv_ws": (),
}

# gcc options that make the generated C see gemmini.h (the folder holding it goes in -I)
C_INCLUDE_OPTIONS = ["-include", "gemmini.h"]

# Declarations put at the top of the generated C (`with_declarations`), for builds that do not
# force a gemmini.h in: TVM's own `tvm.compile(target="c")` + VirtualMachine, whose C then calls
# the functional model linked into the executable (vm.py). Skipped when a gemmini.h was included:
# ours declares the same functions, Gemmini's defines the commands as macros.
_HEADER_GUARDS = ("TVM_COSA_GEMMINI_H", "SRC_MAIN_C_GEMMINI_H")


def declarations() -> str:
    """C prototypes of the commands in COMMANDS, as the functional model's gemmini.h has them."""
    from .functional import RUNTIME_DIR

    header = (RUNTIME_DIR / "gemmini.h").read_text()
    prototypes = [p for p in _prototypes(header) if p.split("(")[0].split()[-1] in COMMANDS]
    guard = " && ".join(f"!defined({g})" for g in _HEADER_GUARDS)
    return "\n".join([f"#if {guard}", "#include <stdint.h>", "#ifdef __cplusplus",
                      'extern "C" {', "#endif", *prototypes, "#ifdef __cplusplus", "}",
                      "#endif", "#endif", ""])


def _prototypes(header: str) -> list[str]:
    """The function prototypes of a C header, one per line (comments and macros dropped)."""
    import re

    text = re.sub(r"/\*.*?\*/", " ", header, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = re.findall(r"[A-Za-z_][\w\s\*]*\b\w+\s*\([^;{}]*\)\s*;", text)
    return [" ".join(p.split()) for p in found]


def with_declarations(stmt):
    """`stmt` under a pragma that makes TVM's C code generator write `declarations()` at the
    top of the file (the LLVM target ignores it)."""
    from tvm import tirx

    return tirx.AttrStmt(tirx.const(0, "int32"), "pragma_import_c", declarations(), stmt)


MVIN_SCALE_IDENTITY = 1.0
_ADDRESS_MASK = 0xFFFFFFFF


def _op(name: str):
    from tvm import tirx
    from tvm.ir import Op, register_op_attr

    op_name = f"tirx.gemmini.{name}"
    try:
        return Op.get(op_name)
    except Exception:  # noqa: BLE001 - not registered in this process yet
        register_op_attr(op_name, "TGlobalSymbol", name)
        register_op_attr(op_name, "TCallEffectKind", int(tirx.CallEffectKind.Opaque.value))
        return Op.get(op_name)


def address(expr):
    """A private-memory address (an int32 expression, bit 31 possibly set) as uint32. Through
    int64 so that constant folding never sees a negative value cast to an unsigned type."""
    from tvm import tirx

    if isinstance(expr, int):
        return tirx.const(expr & _ADDRESS_MASK, "uint32")
    wide = tirx.Cast("int64", expr)
    return tirx.Cast("uint32", tirx.bitwise_and(wide, tirx.const(_ADDRESS_MASK, "int64")))


def exact_float32(value):
    """A float32 constant passed by its bits: TVM's C back end prints float literals with 7
    significant digits, which do not always round-trip (a requantization scale must)."""
    import numpy as np
    from tvm import tirx

    bits = int(np.float32(value).view(np.uint32))
    return tirx.call_intrin("float32", "tirx.reinterpret", tirx.const(bits, "uint32"))


def call(name: str, *args):
    """An Evaluate statement issuing one gemmini.h command `name`, or (for a name that is not a
    gemmini.h command, e.g. gemmini_begin_op) calling the extern function `name`."""
    from tvm import tirx

    def value(a):
        if isinstance(a, float):
            return tirx.const(a, "float32")
        return tirx.const(a, "int32") if isinstance(a, int) else a

    if name not in COMMANDS:
        return tirx.Evaluate(tirx.call_extern("int32", name, *[value(a) for a in args]))
    addresses = COMMANDS[name]
    args = [address(a) if i in addresses else value(a) for i, a in enumerate(args)]
    return tirx.Evaluate(tirx.call_intrin("int32", _op(name), *args))
