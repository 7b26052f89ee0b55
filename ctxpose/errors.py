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
    """An output path cannot be written (not a folder, read-only, full disk, no permission)."""
