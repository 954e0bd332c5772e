"""The oracle's own errors (frozen copies of processing/errors.py as of the oracle: it imports nothing of the job)."""

from __future__ import annotations


class ProcessingError(Exception):
    exit_code = 2


class InputError(ProcessingError):
    pass


class EmptyInputError(InputError):
    pass


class MissingColumnsError(InputError):
    pass
