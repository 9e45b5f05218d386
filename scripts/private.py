"""Files and folders only their owner may read, for scripts/kafka and scripts/postgres (standard library only:
they run before the project's virtualenv exists)."""
from __future__ import annotations

import os
from pathlib import Path


def private_file(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte (credentials, keys; write_text then chmod would
    leave it readable by everyone in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def private_dir(path: Path) -> None:
    """A folder only its owner may enter."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
