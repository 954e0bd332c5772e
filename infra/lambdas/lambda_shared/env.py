"""Reading a Lambda's environment: each helper names the variable in its error."""

from __future__ import annotations

from collections.abc import Mapping

from contract import ContractError


class SettingsError(ValueError):
    """An environment variable is missing or invalid (names the variable)."""


class Environment:
    """Typed reads of ``environ``; every failure is a :class:`SettingsError` naming the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str, max_len: int = 2048) -> str:
        """A required variable (blank is missing), at most ``max_len`` characters."""
        value = self.environ.get(name, "").strip()
        if not value:
            raise SettingsError(f"environment variable {name} is missing or empty")
        if len(value) > max_len:
            raise SettingsError(f"environment variable {name} is longer than {max_len} characters")
        return value

    def optional(self, name: str) -> str:
        """A variable a function deployed before it existed lacks: missing or blank reads as ``""``."""
        return self.environ.get(name, "").strip()

    def prefix(self, name: str, default: str | None = None) -> str:
        """An S3 key prefix: not starting with ``/``, ending with ``/``, at most 512 characters. Required unless
        ``default`` is given (then missing or blank is the default)."""
        value = (self.optional(name) or default) if default is not None else self.text(name, 512)
        if len(value) > 512:
            raise SettingsError(f"environment variable {name} is longer than 512 characters")
        if value.startswith("/") or not value.endswith("/"):
            raise SettingsError(f"environment variable {name}={value!r} must not start with '/' and must end with '/'")
        return value

    def bucket(self, name: str, *, required: bool = True) -> str:
        """A bucket name (no ``/``, at most 63 characters)."""
        value = self.text(name, 63) if required else self.optional(name)
        if "/" in value or len(value) > 63:
            raise SettingsError(f"environment variable {name}={value!r} must be a bucket name")
        return value


def from_contract(exc: ContractError) -> SettingsError:
    """The contract's verdict on a variable, in the Lambdas' words (``environment variable X=... problem``)."""
    return SettingsError(f"environment variable {exc}")


def no_overlap(first: tuple[str, str], second: tuple[str, str]) -> None:
    """Two prefixes ``(name, value)`` must not contain each other.

    Raises:
        SettingsError: naming both variables.
    """
    (a, a_value), (b, b_value) = first, second
    if a_value.startswith(b_value) or b_value.startswith(a_value):
        raise SettingsError(f"environment variables {a}={a_value!r} and {b}={b_value!r} overlap")
