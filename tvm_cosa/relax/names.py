"""Names from the model that are not C identifiers, renamed before they reach generated code.

ONNX tensor names are free text (`gpu_0/data_0`, `input.1`, `1234`). TVM names the parameters of
the PrimFuncs it legalizes after the Relax variables, and its `c` target writes them into the C
source as they are, so a `/` breaks the build. `c_identifiers(mod)` renames every Relax variable
whose name is not a C identifier (`gpu_0/data_0` -> `gpu_0_data_0`, a leading digit or a C
keyword gets a `v_` prefix, clashes get a numeric suffix). Only names change: the functions take
their arguments by position, so callers and outputs are unaffected.
"""

from __future__ import annotations

import keyword
import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while _Bool _Complex _Imaginary".split())


def is_c_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.match(name)) and name not in _C_KEYWORDS


def c_identifier(name: str, taken=()) -> str:
    """`name` made a C identifier, different from every name in `taken`."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name) or "v"
    if not _IDENTIFIER.match(safe) or safe in _C_KEYWORDS or keyword.iskeyword(safe):
        safe = f"v_{safe}"
    candidate, n = safe, 1
    while candidate in taken:
        candidate, n = f"{safe}_{n}", n + 1
    return candidate


def c_identifiers(mod):
    """`mod` with every Relax variable named as a C identifier (the module itself when all are)."""
    import tvm
    from tvm import relax

    def renamed(func):
        names = {v.name for v in relax.analysis.all_vars(func)}
        if all(is_c_identifier(n) for n in names):
            return func
        taken = {n for n in names if is_c_identifier(n)}

        @relax.expr_functor.mutator
        class _Rename(relax.PyExprMutator):
            def visit_var_def_(self, var):
                if is_c_identifier(var.name):
                    return var
                name = c_identifier(var.name, taken)
                taken.add(name)
                kind = relax.DataflowVar if isinstance(var, relax.DataflowVar) else relax.Var
                return kind(name, var.ty)

            def visit_dataflow_var_def_(self, var):
                return self.visit_var_def_(var)

        return _Rename().visit_expr(func)

    changed = {gvar: renamed(func) for gvar, func in mod.functions.items()
               if isinstance(func, relax.Function)}
    if all(changed[g].same_as(mod[g]) for g in changed):
        return mod
    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gvar, func in changed.items():
        out[gvar] = func
    return out
