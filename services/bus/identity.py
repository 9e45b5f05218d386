"""People at the command line: the identity file a person keeps (name, broker credentials, private signing
key), and the identities book a service checks signed acts against (adapters around the pure parts in
signing.py and projections/identities.py)."""
from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .context import Bus
from .projections.identities import IDENTITY_RECORDS, Identities
from .received import Received
from .replay import fold_history
from .settings import ConfigError
from .signing import Verdict, verify_act

DEFAULT_IDENTITY = Path.home() / ".config" / "mlbus" / "identity.json"


@dataclass(frozen=True)
class Identity:
    """What `mlbus people add` writes for a person (mode 0600) and the CLI acts with."""

    name: str
    principal: str              # the broker principal (SCRAM user): the name behind the namespace
    key_id: str
    private_key: bytes          # raw 32-byte Ed25519 seed
    roles: tuple[str, ...]
    kafka: dict                 # librdkafka security properties of the principal

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"name": self.name, "principal": self.principal, "key_id": self.key_id,
                       "private_key": base64.b64encode(self.private_key).decode(), "roles": list(self.roles),
                       "kafka": {k: str(v) for k, v in self.kafka.items()}}, handle, indent=2)
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: Path) -> "Identity":
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"cannot read the identity file {path}: {error}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "Identity":
        """An identity file's contents (ValueError, KeyError or TypeError when it is not one)."""
        raw = json.loads(text)
        return cls(name=str(raw["name"]), principal=str(raw["principal"]), key_id=str(raw["key_id"]),
                   private_key=base64.b64decode(raw["private_key"], validate=True), roles=tuple(raw.get("roles", ())),
                   kafka={str(k): str(v) for k, v in dict(raw["kafka"]).items()})


def identity_file(environ: dict | None = None) -> Path | None:
    """MLBUS_IDENTITY, else ~/.config/mlbus/identity.json if it exists, else None."""
    env = os.environ if environ is None else environ
    if env.get("MLBUS_IDENTITY"):
        return Path(env["MLBUS_IDENTITY"])
    return DEFAULT_IDENTITY if DEFAULT_IDENTITY.exists() else None


class IdentityBook:
    """The identities topic as it stood at a given broker time: read again whenever an act is newer than the
    last read began (a key revoked just before the act must be seen), kept otherwise (replays at start)."""

    def __init__(self, read: Callable[[], Identities], clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)):
        self.read = read
        self.clock_ms = clock_ms
        self.identities = Identities()
        self.read_began_ms = -1

    def at(self, at_ms: int) -> Identities:
        if at_ms >= self.read_began_ms:
            began = self.clock_ms()
            self.identities = self.read()
            self.read_began_ms = began
        return self.identities


class ActVerifier:
    """Checks a person's act (a Received) against the identities as they stood when the broker took it."""

    def __init__(self, book: IdentityBook):
        self.book = book

    def __call__(self, message: Received, roles: tuple[str, ...]) -> Verdict:
        at_ms = message.timestamp_ms
        return verify_act(self.book.at(at_ms), message.record, message.value, at_ms, roles)


def read_identities(bus: Bus) -> Identities:
    """The identities topic folded to its current end."""
    folded = Identities()
    fold_history(bus, IDENTITY_RECORDS, folded.apply)
    return folded


def act_verifier(bus: Bus) -> ActVerifier:
    return ActVerifier(IdentityBook(lambda: read_identities(bus)))
