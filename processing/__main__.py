"""Entry point: ``python -m processing`` and the zip bundle's root ``__main__.py`` both land here."""

from __future__ import annotations

from processing.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
