"""Errors raised to users. Each names the input at fault and what is expected."""


class CoSAError(Exception):
    """Base class of every error tvm_cosa raises on purpose.

    `option`: a (parameter, value) pair that avoids the error. The message says it as Python
    (`backend='builtin'`); the command line says it as its own option (`--backend builtin`)
    through `cli_message`. `remedy`: how the option joins the message ({option} is replaced).
    """

    def __init__(self, message="", *, option=None, remedy=", or use {option}"):
        self.message, self.option, self.remedy = str(message), option, remedy
        super().__init__(self._with_option(f"{option[0]}={option[1]!r}" if option else None))

    def _with_option(self, option_text):
        if not option_text:
            return self.message
        return self.message + self.remedy.format(option=option_text)

    def cli_message(self, flags=None) -> str:
        """The message with its remedy as a command-line option; `flags` maps a parameter to
        the command's option name when they differ (e.g. {"backend": "--check"})."""
        if not self.option:
            return str(self)
        name, value = self.option
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        return self._with_option(f"{flag} {value}")


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


class InputWarning(UserWarning):
    """An input that is read, but not as its author may expect (named, with the fix)."""


class InfeasibleError(CoSAError):
    """No schedule exists: a buffer is too small, or a dimension cannot be placed on the fanouts."""


class SolverError(CoSAError):
    """The MILP solver failed, or is not installed, or its licence refused the model."""


class TimeloopError(CoSAError):
    """timeloop-model is missing, failed, or timed out; carries Timeloop's own message."""
