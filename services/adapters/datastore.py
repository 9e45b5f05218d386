"""Content-addressed data snapshots: a batch is a file named by its sha256, never changed once written."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .blobs import BlobStore, DataFileError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


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


def store_snapshot(root: str | Path, dataset: str, source: Path) -> Snapshot:
    """Copy source into the store (a folder or fsspec URL) as dataset/<sha256>.<ext>, once, and describe it."""
    fmt = file_format(source)
    sha = sha256_file(source)
    uri = BlobStore(root).put_file(f"{dataset}/{sha}{source.suffix.lower()}", source)
    return Snapshot(uri=uri, sha256=sha, size_bytes=source.stat().st_size, format=fmt)


def load_snapshot(uri: str, sha256: str, fmt: str, root: str | Path, max_bytes: int,
                  max_rows: int | None = None) -> pd.DataFrame:
    """The snapshot as a DataFrame, after checking where it is, its size, that it is the promised bytes, and
    (before decoding all of it) that it does not hold more than max_rows rows or decompress past max_bytes."""
    payload = BlobStore(root).read(uri, max_bytes, what="snapshot")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != sha256:
        raise DataFileError("sha256", f"snapshot {uri} has sha256 {actual}, the event says {sha256}")
    try:
        if fmt == "parquet":
            check_parquet_size(payload, uri, max_bytes, max_rows)
            return pd.read_parquet(io.BytesIO(payload))
        frame = pd.read_csv(io.BytesIO(payload), nrows=None if max_rows is None else max_rows + 1)
        return frame
    except DataFileError:
        raise
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except Exception as error:    # pandas and pyarrow raise many types for a corrupt file
        raise DataFileError("file", f"snapshot {uri} is not readable as {fmt}: {type(error).__name__}: "
                                    f"{str(error)[:200]}") from None


@dataclass(frozen=True)
class SnapshotStore:
    """The data snapshots under root (a folder or fsspec URL): what services may read, and how much of it."""

    root: str | Path
    max_bytes: int

    @classmethod
    def from_settings(cls, settings) -> "SnapshotStore":
        BlobStore(settings.storage.data_store).fs                  # a misconfigured store fails at start (ConfigError)
        return cls(settings.storage.data_store, settings.storage.max_snapshot_bytes)

    def load(self, uri: str, sha256: str, fmt: str, max_rows: int | None = None) -> pd.DataFrame:
        return load_snapshot(uri, sha256, fmt, self.root, self.max_bytes, max_rows)


def check_parquet_size(payload: bytes, uri: str, max_bytes: int, max_rows: int | None) -> None:
    """Refuse a Parquet file by its footer: too many rows, or columns that decode past the cap (a bomb). The
    decoded size is estimated as the pages' uncompressed bytes plus 8 bytes per cell (dictionary and run-length
    encodings make a few kilobytes of pages stand for millions of cells)."""
    import pyarrow.parquet as pq
    metadata = pq.ParquetFile(io.BytesIO(payload)).metadata
    if max_rows is not None and metadata.num_rows > max_rows:
        raise DataFileError("rows", f"{metadata.num_rows} rows, the contract allows at most {max_rows}")
    unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)) + \
        8 * metadata.num_rows * metadata.num_columns
    if unpacked > max_bytes:
        raise DataFileError("size", f"snapshot {uri} decompresses to {unpacked} bytes, more than the cap of "
                                    f"{max_bytes}")


def count_rows(path: Path, fmt: str) -> int:
    """Rows in a file, or -1 when it cannot be read (the validator will say why)."""
    try:
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except Exception:
        return -1
    return len(frame)
