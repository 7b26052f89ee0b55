"""Exceptions users see: one line naming the file or key, what was found and what was expected."""


class CtxposeError(Exception):
    """Base class of every error caused by user input (a file, a key, a value), not by a bug."""


class ConfigError(CtxposeError):
    """A config file or override is invalid."""


class DataError(CtxposeError):
    """A dataset file is missing, corrupt or not in the expected format."""


class CheckpointError(CtxposeError):
    """A checkpoint cannot be read or does not fit the model."""


class OutputError(CtxposeError):
    """An output path cannot be written (read-only, full, not a folder, no permission)."""


class Stopped(BaseException):
    """Ctrl-C or SIGTERM stopped the work after keeping what was finished; the message says how to continue.

    The one exception that carries a stop from a loop to the command line, which prints ``interrupted: <message>``
    and exits 130. Like ``KeyboardInterrupt`` it is not an ``Exception``, so ``except Exception`` does not swallow
    it, and it is not a ``KeyboardInterrupt``, which Typer turns into a silent exit before the message is printed.
    """

    def __init__(self, message: str = "", *, report: object = None) -> None:
        """``report``: what the stopped work finished, where it has one (preprocessing's ``PreprocessReport``)."""
        super().__init__(message)
        self.report = report
