"""Where data snapshots and model artifacts live: a local folder (the default) or any fsspec URL — `s3://bucket/
prefix` in production (s3fs), `gs://`, `az://`, … — so the services that write and read them need not share a
filesystem. Files are written once under content-addressed names; every read is confined to the store,
bounded in size before a byte is read, and hash-checked by the caller. A backend's options (endpoint,
credentials) come from fsspec's own configuration, e.g. FSSPEC_S3='{"endpoint_url": "…"}'."""
from __future__ import annotations

import errno

import os
import posixpath
import shutil
import stat
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlparse

from fsspec.core import strip_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from services.bus.settings import ConfigError


class DataFileError(Exception):
    """A snapshot cannot be used: missing, unreadable, or not the bytes its event promised."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.check = check


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def confined_file(uri: str, root: Path, max_bytes: int, what: str = "snapshot") -> tuple[Path, int]:
    """(real path, size) of a regular file under root, at most max_bytes; else DataFileError. A name that
    climbs out of root (`..`, a symlink), a directory, a device such as /dev/zero, or a file past the cap is
    refused before a byte is read."""
    path = local_path(uri)
    try:
        real = path.resolve(strict=True)
        info = os.stat(real)
    except (OSError, RuntimeError) as error:
        raise DataFileError("file", f"{what} {uri} does not exist or cannot be read: {type(error).__name__}") \
            from None
    if not real.is_relative_to(root.resolve()):
        raise DataFileError("location", f"{what} {uri} is outside the store {root}: refused")
    if not stat.S_ISREG(info.st_mode):
        raise DataFileError("file", f"{what} {uri} is not a regular file")
    if info.st_size > max_bytes:
        raise DataFileError("size", f"{what} {uri} has {info.st_size} bytes, more than the cap of {max_bytes}")
    return real, info.st_size


def read_bounded(path: Path, size: int) -> bytes:
    """Exactly the size the file had when it was checked, never more (it may grow meanwhile). A file the service
    may not read is the record's to answer for (DataFileError), not the store's."""
    try:
        with open(path, "rb") as stream:
            return stream.read(size)
    except PermissionError as error:
        raise DataFileError("file", f"{path.name} cannot be read: {error}") from None


class BlobStore:
    """A store's misconfiguration (an unknown protocol, s3:// without s3fs) is a ConfigError at first use, and a
    backend that cannot be reached raises as it is: both are the infrastructure's failures, not the data's, so
    the service crashes loudly instead of refusing good data. A file that is not there is the data's."""

    def __init__(self, location: str | Path):
        self.location = str(location)

    @cached_property
    def _fs(self):
        try:
            return url_to_fs(self.location)
        except (ImportError, ValueError) as error:
            raise ConfigError(f"storage {self.location} cannot be used: {error}") from None

    @property
    def fs(self):
        return self._fs[0]

    @property
    def root(self) -> str:
        """The store's path inside its filesystem (no protocol)."""
        return self._fs[1].rstrip("/")

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def local_root(self) -> Path | None:
        return Path(self.root) if self.local else None

    def uri(self, path: str) -> str:
        return Path(path).resolve().as_uri() if self.local else self.fs.unstrip_protocol(path)

    def put_bytes(self, name: str, payload: bytes) -> str:
        """payload as root/name unless it is there already (names are content hashes); its URI."""
        return self._put(name, lambda target: Path(target).write_bytes(payload),
                         lambda target: self.fs.pipe_file(target, payload))

    def put_file(self, name: str, source: Path) -> str:
        return self._put(name, lambda target: shutil.copyfile(source, target),
                         lambda target: self.fs.put_file(str(source), target))

    def _put(self, name: str, write_local, write_remote) -> str:
        target = posixpath.join(self.root, name)
        if self.local:
            if not os.path.exists(target):                 # atomic: a reader never sees half a file
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                partial = f"{target}.{os.getpid()}.partial"
                write_local(partial)
                os.replace(partial, target)
        elif not self.fs.exists(target):                    # an object store's PUT is atomic
            write_remote(target)
        return self.uri(target)

    def read(self, uri: str, max_bytes: int, what: str) -> bytes:
        """The bytes at uri if it names a file in this store of at most max_bytes; else DataFileError."""
        if self.local:
            local_path, size = confined_file(uri, Path(self.root), max_bytes, what=what)
            return read_bounded(local_path, size)
        path = self._confined(uri, what)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise DataFileError("file", f"{what} {uri} does not exist") from None
        except (PermissionError, IsADirectoryError, NotADirectoryError) as error:   # what the uri names, not the
            raise DataFileError("file", f"{what} {uri} cannot be read: {error}") from None  # store being away
        except OSError as error:
            if error.errno in (errno.ENAMETOOLONG, errno.EINVAL):
                raise DataFileError("file", f"{what} {uri} is not a name the store takes: {error}") from None
            raise
        if info.get("type") != "file":
            raise DataFileError("file", f"{what} {uri} is not a file")
        if info["size"] > max_bytes:
            raise DataFileError("size", f"{what} {uri} has {info['size']} bytes, more than the cap of {max_bytes}")
        return self.fs.cat_file(path, start=0, end=info["size"])

    def _confined(self, uri: str, what: str) -> str:
        """uri's path in this store's filesystem, if uri is inside the store: same protocol, under the root,
        no `..`."""
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        scheme, separator, rest = uri.partition("://")
        path = strip_protocol(uri) if separator and scheme in protocols else ""
        if ".." in rest.split("/") or not path.startswith(self.root + "/"):
            raise DataFileError("location", f"{what} {uri} is outside the store {self.location}: refused")
        return path
