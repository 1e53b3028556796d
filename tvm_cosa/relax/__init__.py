"""The TVM (Relax) side of tvm_cosa: `CoSAPass` and its parts.

`CoSAPass` is imported on first use so that `tvm_cosa.relax.solve` (run in worker processes)
and the report / cache helpers do not pay for importing TVM.
"""

__all__ = ["CoSAPass", "FallbackWarning", "Report", "LayerRecord", "ScheduleCache", "OpInfo",
           "extract", "lower_generic"]


def __getattr__(name):
    if name in ("CoSAPass", "FallbackWarning"):
        from . import pass_

        return getattr(pass_, name)
    if name in ("Report", "LayerRecord"):
        from . import report

        return getattr(report, name)
    if name == "ScheduleCache":
        from .cache import ScheduleCache

        return ScheduleCache
    if name in ("OpInfo", "extract"):
        from . import extract as _extract

        return getattr(_extract, name)
    if name == "lower_generic":
        from .lowering import lower_generic

        return lower_generic
    raise AttributeError(f"module 'tvm_cosa.relax' has no attribute {name!r}")
