"""The audit anchor: signed tree heads kept outside Kafka, where whoever can recreate the topics cannot reach.

MLBUS_AUDIT_ANCHOR is a local directory (default var/audit-anchor/): one append-only file per log,
`<log_id>.jsonl`, one head per line, fsync'd. Or any fsspec URL (s3://bucket/prefix, gs://…, file://…): object
stores do not append, so each head is its own object `<log_id>/<tree_size>-<timestamp>.json`, written once —
with S3 Object Lock in compliance mode on the bucket, nobody (root account included) can delete or overwrite
one before its retention ends. That is the intended production target (docs/audit.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import fsspec

from services.domain import TreeHead


class AnchorError(RuntimeError):
    """The anchor cannot be written or read (an infrastructure failure: the auditor stops loudly)."""


class Anchor:
    def __init__(self, where: str | Path):
        self.where = str(where)
        self.is_url = "://" in self.where

    def append(self, heads: list[TreeHead]) -> None:
        if not heads:
            return
        try:
            if self.is_url:
                fs, root = fsspec.core.url_to_fs(self.where)
                for head in heads:
                    folder = f"{root.rstrip('/')}/{_safe(head.log_id)}"
                    fs.makedirs(folder, exist_ok=True)          # a no-op on object stores
                    with fs.open(f"{folder}/{head.tree_size:020d}-{head.timestamp}.json", "w") as handle:
                        handle.write(head.line() + "\n")
                return
            directory = Path(self.where)
            directory.mkdir(parents=True, exist_ok=True)
            by_log: dict[str, list[TreeHead]] = {}
            for head in heads:
                by_log.setdefault(head.log_id, []).append(head)
            for log_id, kept in by_log.items():
                fd = os.open(directory / f"{_safe(log_id)}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, "".join(head.line() + "\n" for head in kept).encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as error:
            raise AnchorError(f"cannot append to the audit anchor {self.where}: {error}") from error

    def lines(self, log_id: str) -> list[tuple[str, str]]:
        """Every line kept for this log, with where it was (file:line or object): unparsed, for verify to judge."""
        try:
            if self.is_url:
                fs, root = fsspec.core.url_to_fs(self.where)
                folder = f"{root.rstrip('/')}/{_safe(log_id)}"
                if not fs.exists(folder):
                    return []
                found = []
                for path in sorted(fs.ls(folder, detail=False)):
                    with fs.open(path, "r") as handle:
                        found += [(path, line) for line in handle.read().splitlines() if line.strip()]
                return found
            path = Path(self.where) / f"{_safe(log_id)}.jsonl"
            if not path.exists():
                return []
            return [(f"{path}:{n}", line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        except OSError as error:
            raise AnchorError(f"cannot read the audit anchor {self.where}: {error}") from error


def _safe(log_id: str) -> str:
    """A log id as a file name (namespaces and topic names hold only [A-Za-z0-9._-])."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in log_id)
