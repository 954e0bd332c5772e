"""Domain errors: expected failures that end the job with a clean report instead of a traceback."""

from __future__ import annotations


class ProcessingError(Exception):
    """Base class of every expected failure; ``exit_code`` is the process exit status."""

    exit_code = 2


class ConfigError(ProcessingError):
    """The dataset config is invalid; the message starts with the offending key path."""


class InputError(ProcessingError):
    """The input cannot be processed (missing, empty, unreadable or lacking required columns)."""


class EmptyInputError(InputError):
    """An input file has no header (0 bytes or whitespace only), or no input holds any data row."""


class MissingColumnsError(InputError):
    """An input file lacks required columns; the message names them."""
