"""Errors raised to users. Each names the input at fault and what is expected."""


class CoSAError(Exception):
    """Base class of every error tvm_cosa raises on purpose."""


class InputError(CoSAError, ValueError):
    """A malformed file, a missing field, or an argument of the wrong form."""

    def __init__(self, message, *, source=None, field=None):
        self.source = source
        self.field = field
        where = []
        if source is not None:
            where.append(str(source))
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class InfeasibleError(CoSAError):
    """No schedule exists: a buffer is too small, or a dimension cannot be placed on the fanouts."""


class SolverError(CoSAError):
    """The MILP solver failed, or is not installed, or its licence refused the model."""


class TimeloopError(CoSAError):
    """timeloop-model is missing, failed, or timed out; carries Timeloop's own message."""
