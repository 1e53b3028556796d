"""What several commands share: refusing an option the machine cannot honour before any work
starts, and turning the pass's fallback warnings into one readable summary."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import click


def require_solver(solver: str) -> None:
    """--solver gurobi without gurobipy would make every layer fall back: refuse it up front."""
    from ..solvers import available_solvers

    if solver not in ("auto", *available_solvers()):
        raise click.ClickException(
            f"--solver {solver}: {solver} is not installed here "
            f"(pip install 'tvm_cosa[{solver}]'); use --solver highs or --solver auto")


def require_check(check: str, flag: str = "--check") -> None:
    """A Timeloop check without timeloop-model would fail on every layer: refuse it up front."""
    from ..timeloop import find_timeloop

    if check == "timeloop" and find_timeloop(None) is None:
        raise click.ClickException(
            f"{flag} timeloop: timeloop-model is not on PATH (nor in $TIMELOOP_DIR); install "
            f"Timeloop or use {flag} builtin (or {flag} auto: Timeloop when installed)")


@contextmanager
def fallback_warnings_collected():
    """Collect the pass's FallbackWarnings instead of letting Python print them with source
    lines; the report's records carry the same reasons (see `fallback_summary`)."""
    from ..relax.pass_ import FallbackWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FallbackWarning)
        yield
    for w in caught:  # anything else is shown as usual
        if not issubclass(w.category, FallbackWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def fallback_summary(report) -> str:
    """One line per reason: which layers keep TVM's default schedule, and why."""
    from ..relax.report import FALLBACK

    by_reason: dict = {}
    for r in report.records:
        if r.status == FALLBACK:
            by_reason.setdefault(r.reason, []).append(r)
    if not by_reason:
        return ""
    count = sum(len(v) for v in by_reason.values())
    lines = [f"{count} of {len(report.records)} operators keep TVM's default schedule:"]
    for reason, records in by_reason.items():
        layers = ", ".join(f"#{r.index}" for r in records)
        lines.append(f"  {layers} ({records[0].op} {records[0].shape}): {reason}")
    return "\n".join(lines)


def require_scheduled(report, arch=None) -> None:
    """A compile that scheduled nothing did not do what was asked: exit non-zero."""
    from ..relax.report import SCHEDULED, UNSUPPORTED

    candidates = [r for r in report.records if r.status != UNSUPPORTED]
    if not candidates:
        raise click.ClickException("the model has no conv2d or matmul this compiler schedules: "
                                   "nothing was scheduled")
    if not report.by_status(SCHEDULED):
        hint = ""
        if getattr(arch, "mapspace_missing", False):
            hint = (f"; {arch.name} is a CoSA / Timeloop 0.3 file read without a mapspace, so "
                    "every level keeps every tensor: give its bypass file with --mapspace FILE")
        raise click.ClickException(f"none of the model's {len(candidates)} conv2d / matmul "
                                   f"operators could be scheduled (reasons above){hint}")
