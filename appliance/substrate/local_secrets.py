"""Secrets generated on the appliance's own host at first start, never shipped, never defaulted.

Each lives in `$HEALTHOS_HOME/secrets/<name>` (directory 0700, file 0600) and is created atomically,
so two processes starting together agree on one value.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def host_secret(home: Path, name: str, nbytes: int = 32) -> str:
    directory = home / "secrets"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    path = directory / name
    if not path.exists():
        value = secrets.token_urlsafe(nbytes)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(value)
    return path.read_text().strip()
