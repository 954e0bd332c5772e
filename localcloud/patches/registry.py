"""Every moto attribute our patches replace goes through :func:`replace`, so :func:`suspended` can give plain moto
back (e.g. to in-process ``mock_aws`` unit tests that run in the same pytest session as a LocalCloud); :func:`once`
makes each ``patch_*`` function idempotent. Imports nothing from localcloud (the bottom of the dependency order)."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

_applied: set[str] = set()
_lock = threading.RLock()

# (owner, attribute, original as stored on the owner, replacement) of every attribute we replaced
_REPLACED: list[tuple[Any, str, Any, Any]] = []


def replace(owner: Any, name: str, new: Any) -> None:
    """Set ``owner.name = new`` (a classmethod stays a classmethod) and remember the original."""
    original = inspect.getattr_static(owner, name)
    if isinstance(original, classmethod) and not isinstance(new, classmethod):
        new = classmethod(new)
    setattr(owner, name, new)
    _REPLACED.append((owner, name, original, new))


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Plain moto 5.2.5 inside the block: every replaced attribute is restored, then re-applied on exit.

    For in-process ``mock_aws`` tests that assert moto's own behaviour in a session that also ran a LocalCloud
    (patches are process-wide). Not for use while a LocalCloud is serving. The added CloudFormation resource
    models stay registered (they only add types plain moto would skip).
    """
    with _lock:
        for owner, name, original, _new in reversed(_REPLACED):
            setattr(owner, name, original)
    try:
        yield
    finally:
        with _lock:
            for owner, name, _original, new in _REPLACED:
                setattr(owner, name, new)


def once(name: str) -> bool:
    """True the first time it is called with ``name`` (then the patch applies), False afterwards."""
    with _lock:
        if name in _applied:
            return False
        _applied.add(name)
        return True
