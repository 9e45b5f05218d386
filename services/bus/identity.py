"""People at the command line: the identity file a person keeps (name, broker credentials, private signing
key), and the identities book a service checks signed acts against (adapters around the pure parts in
signing.py and projections/identities.py)."""
from __future__ import annotations

import base64
import getpass
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (BestAvailableEncryption, Encoding, NoEncryption,
                                                          PrivateFormat, load_pem_private_key)

from .context import Bus
from .projections.identities import (IDENTITY_RECORDS, REVOKED_SUFFIX, SERVICE_ROLE, Identities,
                                     declaration_refusal)
from .received import Received
from .replay import apply_fold, fold_history
from .settings import ConfigError
from .signing import ActLedger, Verdict, signature_refusal, verify_act

DEFAULT_IDENTITY = Path.home() / ".config" / "mlbus" / "identity.json"


@dataclass(frozen=True)
class Identity:
    """A person's identity file, on their own machine only: made by `mlbus people keygen` (the private key never
    leaves it; optionally encrypted with a passphrase), completed by `mlbus people credentials` with the broker
    credentials the admin hands over."""

    name: str
    principal: str              # the broker principal (SCRAM user): "" until the admin enrolled the key
    key_id: str
    private_key: bytes          # raw 32-byte Ed25519 seed
    roles: tuple[str, ...]
    kafka: dict                 # librdkafka security properties of the principal ({} until enrolled)

    def save(self, path: Path, passphrase: bytes | None = None) -> None:
        """Written 0600 (its directory 0700 when made here); the key encrypted when a passphrase is given."""
        if passphrase:
            encrypted = Ed25519PrivateKey.from_private_bytes(self.private_key).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
            key = {"private_key_encrypted": encrypted.decode()}
        else:
            key = {"private_key": base64.b64encode(self.private_key).decode()}
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"name": self.name, "principal": self.principal, "key_id": self.key_id, **key,
                       "roles": list(self.roles), "kafka": {k: str(v) for k, v in self.kafka.items()}},
                      handle, indent=2)
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
        if "private_key_encrypted" in raw:
            private = load_pem_private_key(str(raw["private_key_encrypted"]).encode(), passphrase()).private_bytes(
                Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        else:
            private = base64.b64decode(raw["private_key"], validate=True)
        return cls(name=str(raw["name"]), principal=str(raw.get("principal") or ""), key_id=str(raw["key_id"]),
                   private_key=private, roles=tuple(raw.get("roles", ())),
                   kafka={str(k): str(v) for k, v in dict(raw.get("kafka") or {}).items()})


def passphrase() -> bytes:
    """The identity file's passphrase: MLBUS_PASSPHRASE, else asked on the terminal."""
    if os.environ.get("MLBUS_PASSPHRASE"):
        return os.environ["MLBUS_PASSPHRASE"].encode()
    if not sys.stdin.isatty():
        raise ValueError("the private key is encrypted: set MLBUS_PASSPHRASE or run on a terminal")
    return getpass.getpass("passphrase of your signing key: ").encode()


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
        self.ledger = ActLedger()

    def __call__(self, message: Received, roles: tuple[str, ...]) -> Verdict:
        at_ms = message.timestamp_ms
        verdict = verify_act(self.book.at(at_ms), message.record, message.value, at_ms, roles)
        if verdict.refusal is None:
            replayed = self.ledger.replay_refusal(f"{verdict.signer_key}/{message.value['act_id']}",
                                                  (message.topic, message.partition, message.offset), at_ms)
            if replayed:
                return Verdict(refusal=replayed)
        return verdict


def read_identities(bus: Bus) -> Identities:
    """The identities topic folded to its current end."""
    folded = Identities()
    fold_history(bus, IDENTITY_RECORDS, folded.apply)
    return folded


def act_verifier(bus: Bus) -> ActVerifier:
    return ActVerifier(IdentityBook(lambda: read_identities(bus)))


def read_enrolment(path: Path, name: str) -> dict:
    """An enrolment request (`mlbus people keygen`, or a service's at its first start) whose proof of possession
    verifies for `name`: {name, key_id, public_key, proof}. ConfigError otherwise."""
    try:
        raw = json.loads(path.read_text())
        request = {"name": str(raw["name"]), "key_id": str(raw["key_id"]), "public_key": str(raw["public_key"]),
                   "proof": str(raw["proof"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read the enrolment request {path}: {error}") from None
    if request["name"] != name:
        raise ConfigError(f"{path} enrols {request['name']}, not {name}")
    refused = declaration_refusal(None, {**request, "principal": name, "roles": [], "revoked_at": None})
    if refused:
        raise ConfigError(f"{path}: {refused}")
    return request


def declare_key(admin_bus: Bus, request: dict, principal: str, roles: list[str],
                endorsements: list[dict] | None = None) -> None:
    """An enrolled key on the identities topic (as the broker admin, the topic's one writer), with the admins'
    endorsements its roles need."""
    publish_declaration(admin_bus, {**request, "principal": principal, "roles": sorted(set(roles)),
                                    "endorsements": endorsements or [], "created_at": datetime.now(timezone.utc),
                                    "revoked_at": None, "declared_by": "admin"})


def publish_declaration(admin_bus: Bus, declared: dict) -> None:
    """One IdentityDeclared: a declaration keyed by its key id, a revocation by `<key id>.revoked` (compaction keeps
    both, and each reader takes the broker's time of each)."""
    from .envelope import Event
    from .publish import Publisher
    publisher = Publisher(admin_bus, "cli:admin")
    revoked = declared["revoked_at"] is not None
    publisher.publish(Event("mlbus.IdentityDeclared", declared,
                            key=declared["key_id"] + (REVOKED_SUFFIX if revoked else ""),
                            id=f"{declared['key_id']}-{'revoked' if revoked else 'created'}",
                            subject=declared["name"]))
    publisher.flush()


Verify = Callable[[Received, tuple[str, ...]], Verdict]


def signed_only(fold: Callable[..., object], verify: Verify,
                signers: dict[str, tuple[str, ...]]) -> Callable[[Received], None]:
    """`fold`, for the records in `signers` only when their signature verifies with one of those roles and names
    its signer (e.g. specs: a data scientist's, or none is folded): every reader of an act checks it, not only
    the service it is addressed to. Other records are folded as they come."""
    def checked(received: Received) -> None:
        roles = signers.get(received.record)
        if roles is not None and act_refusal(received, verify, roles) is not None:
            return
        apply_fold(fold, received)
    checked.takes_received = True          # type: ignore[attr-defined]  # folds (replay, follow) hand it the message
    return checked


def act_refusal(received: Received, verify: Verify, roles: tuple[str, ...]) -> str | None:
    """Why this act is not taken from whom it must come: a person holding one of `roles` who is the one it names
    (CLAIMED_BY), or — roles ("service:NAME",) — that service's own key. None when it is."""
    services = [r.removeprefix("service:") for r in roles if r.startswith("service:")]
    claimed = received.value.get(CLAIMED_BY.get(received.record, ""))
    if services:
        verdict = verify(received, (SERVICE_ROLE,))
        if verdict.refusal is None and verdict.signer not in services:
            return f"signature: made by {verdict.signer}, not by {' or '.join(services)}"
        return signature_refusal(verdict, claimed) if claimed else (verdict.refusal and f"signature: {verdict.refusal}")
    return signature_refusal(verify(received, roles), claimed or "")


CLAIMED_BY = {"mlbus.ModelSpecDefined": "defined_by", "mlbus.PromotionPolicyDefined": "defined_by",
              "mlbus.FeatureViewDefined": "defined_by",
              "mlbus.TrainingRequested": "requested_by", "mlbus.ApprovalSubmitted": "actor",
              "mlbus.DeploymentRequested": "actor"}
SPEC_SIGNERS = {"mlbus.ModelSpecDefined": ("data-scientist",), "mlbus.FeatureViewDefined": ("data-scientist",)}
# what followers of acts check
ACT_SIGNERS: dict[str, tuple[str, ...]] = {**SPEC_SIGNERS, "mlbus.PromotionPolicyDefined": ("admin",)}
TRAINED_SIGNER = {"mlbus.ModelTrained": ("service:trainer",)}         # a version's record: the trainer's key
