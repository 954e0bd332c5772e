"""In-process moto server on loopback.

moto runs in *this* Python process (``ThreadedMotoServer``), so the patches in
:mod:`localcloud.moto_patches` apply to the backends that serve the HTTP API.
The server binds to 127.0.0.1 on a free port; clients (boto3, the CDK CLI) must
use ``http://localhost:<port>``: moto only recognises ``localhost`` when it
parses an S3 TemplateURL (see ../shared/EMULATOR.md).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.request

from localcloud.endpoints import ACCOUNT_ID, REGION, client_env

__all__ = ["ACCOUNT_ID", "REGION", "MotoServer", "client_env", "free_port"]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """Context manager: ``with MotoServer() as srv: srv.endpoint``.

    Applies :func:`localcloud.moto_patches.apply_all` before starting, and always
    stops the server thread on exit.
    """

    def __init__(self, port: int | None = None, patch: bool = True):
        self.port = port or free_port()
        self.patch = patch
        self._server = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> MotoServer:
        if self._server is not None:
            return self
        # moto builds callback URLs (custom resources) from MOTO_PORT; account id
        # is the default one (123456789012).
        self._set_env("MOTO_PORT", str(self.port))
        self._set_env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
        if self.patch:
            from localcloud import moto_patches

            moto_patches.apply_all(endpoint=self.endpoint)
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self._wait_ready()
        return self

    def wrap_app(self, middleware) -> None:
        """Put a WSGI middleware (``app -> app``) in front of the running server's application (fault injection,
        :mod:`localcloud.faults`). werkzeug's server calls ``server.app`` per request, so this takes effect at once."""
        if self._server is None or self._server._server is None:
            raise RuntimeError("start the server first")
        self._server._server.app = middleware(self._server._server.app)

    def _set_env(self, key: str, value: str) -> None:
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        os.environ[key] = value

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def reset(self) -> None:
        """Drop all emulated state (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.stop()
            finally:
                self._server = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
