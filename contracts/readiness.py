"""What a starting part waits for, where `streamwhisk status` reads it: <home>/run/<part>.waiting.

Each component names itself once (`as_part`); the shared wait loops (Kafka, CouchDB, the container engine) say what
they wait for and clear it once it answers. A file, not an endpoint: the API serves nothing until its dependencies
answer, and the other parts serve no HTTP at all.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_file: Path | None = None
_waiting: str | None = None


def path(home: Path, part: str) -> Path:
    return home / "run" / f"{part}.waiting"


def as_part(home: Path, part: str) -> None:
    """This process is `part` of the stack at `home`; it waits for nothing yet."""
    global _file
    _file = path(home, part)
    with contextlib.suppress(OSError):
        _file.unlink(missing_ok=True)


def waiting(what: str) -> None:
    """Say what this process waits for (written once per change, not per retry)."""
    global _waiting
    if _file is None or what == _waiting:
        return
    _waiting = what
    with contextlib.suppress(OSError):
        _file.parent.mkdir(parents=True, exist_ok=True)
        tmp = _file.with_suffix(".tmp")
        tmp.write_text(what)
        os.replace(tmp, _file)


def ready() -> None:
    """Whatever this process waited for answers now."""
    global _waiting
    if _file is None or _waiting is None:
        return
    _waiting = None
    with contextlib.suppress(OSError):
        _file.unlink(missing_ok=True)


def read(home: Path, part: str) -> str | None:
    try:
        return path(home, part).read_text() or None
    except OSError:
        return None
