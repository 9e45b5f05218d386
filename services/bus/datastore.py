"""Content-addressed data snapshots: a batch is a file named by its sha256, never changed once written."""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class DataFileError(Exception):
    """A snapshot cannot be used: missing, unreadable, or not the bytes its event promised."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class Snapshot:
    uri: str
    sha256: str
    size_bytes: int
    format: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path.name}: unknown format; use .csv or .parquet") from None


def store_snapshot(root: Path, dataset: str, source: Path) -> Snapshot:
    """Copy source into root/dataset/<sha256>.<ext> (atomically, once) and describe it."""
    fmt = file_format(source)
    sha = sha256_file(source)
    target = root / dataset / f"{sha}{source.suffix.lower()}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + f".{os.getpid()}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    return Snapshot(uri=target.resolve().as_uri(), sha256=sha, size_bytes=target.stat().st_size, format=fmt)


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def load_snapshot(uri: str, sha256: str, fmt: str) -> pd.DataFrame:
    """The snapshot as a DataFrame, after checking it is the promised bytes."""
    path = local_path(uri)
    if not path.exists():
        raise DataFileError("file", f"snapshot {uri} does not exist")
    actual = sha256_file(path)
    if actual != sha256:
        raise DataFileError("sha256", f"snapshot {uri} has sha256 {actual}, the event says {sha256}")
    try:
        return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except Exception as error:    # pandas and pyarrow raise many types for a corrupt file
        raise DataFileError("file", f"snapshot {uri} is not readable as {fmt}: {type(error).__name__}: "
                                    f"{str(error)[:200]}") from None


def count_rows(path: Path, fmt: str) -> int:
    """Rows in a file, or -1 when it cannot be read (the validator will say why)."""
    try:
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except Exception:
        return -1
    return len(frame)
