"""Signed tree heads of audit.log (pure apart from the Ed25519 primitives): what the auditor signs, how anyone
checks it, and the auditor's log-signing key.

A head commits to the first `tree_size` records of the log: `root_hash` is their RFC 9162 Merkle root (hex).
The signed bytes are the JSON, sorted keys, no spaces, of
    {"log_id": str, "root_hash": hex, "timestamp": epoch ms, "tree_size": int, "version": "mlbus-tree-head/1"}
and `signature` is the base64 Ed25519 signature of those bytes by the key `key_id` (first 32 hex of SHA-256 of
the raw public key, as for people's keys). docs/audit.md shows how to check one with openssl.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.bus.signing import prove_possession

VERSION = "mlbus-tree-head/1"
CHAIN_VERSION = "mlbus-chain-head/1"     # a head's binding to the chain's hash at its size (chain_bytes)
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TreeHead:
    log_id: str
    tree_size: int
    root_hash: str                 # hex
    timestamp: int                 # epoch ms, when it was signed
    key_id: str
    signature: str                 # base64 Ed25519

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.log_id, self.tree_size, self.root_hash, self.timestamp)

    def young_for_ms(self, patience_ms: int, now_ms: int) -> int:
        """How much longer this head is younger than `patience_ms` (0: no more), by its own timestamp — one in the
        future counts from now, so a head cannot buy itself more than the patience. What others do after a head
        is signed (the auditor appends it to the anchor, a witness co-signs it) is given that long."""
        return max(0, min(self.timestamp, now_ms) + patience_ms - now_ms)

    def line(self) -> str:
        """One line of the anchor: the head as JSON."""
        return _JSON.encode(asdict(self))

    @classmethod
    def from_json(cls, value: dict) -> "TreeHead":
        """A head from the anchor's JSON or a checkpoint's fields (ValueError if it is not one)."""
        try:
            return cls(log_id=str(value["log_id"]), tree_size=int(value["tree_size"]),
                       root_hash=str(value["root_hash"]), timestamp=int(value["timestamp"]),
                       key_id=str(value["key_id"]), signature=str(value["signature"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a tree head: {error!r}") from None


def parse_line(line: str) -> TreeHead:
    """A head from an anchor line (ValueError when the line is not one)."""
    return TreeHead.from_json(json.loads(line))


def signed_bytes(log_id: str, tree_size: int, root_hash: str, timestamp: int) -> bytes:
    return _JSON.encode({"log_id": log_id, "root_hash": root_hash, "timestamp": timestamp, "tree_size": tree_size,
                         "version": VERSION}).encode()


def chain_bytes(head: TreeHead, chain_hash: str) -> bytes:
    """What binds a head to the hash chain at its size: the JSON, sorted keys, no spaces, of {"chain_hash",
    "log_id", "root_hash", "tree_size", "version": "mlbus-chain-head/1"} (another version string than a head's, so
    neither signature passes for the other). A head's root and its checkpoint's chain hash were otherwise unbound:
    a head signed in a transaction that then aborted (a fork the log never held) could be republished with the
    committed chain hash beside it and pass for the log's."""
    return _JSON.encode({"chain_hash": chain_hash, "log_id": head.log_id, "root_hash": head.root_hash,
                         "tree_size": head.tree_size, "version": CHAIN_VERSION}).encode()


def chain_problem(head: TreeHead, chain_hash: str, signature: str | None, keys: dict[str, bytes]) -> str | None:
    """Why `signature` does not bind the head to `chain_hash` under the key that signed the head (None when it
    does)."""
    public = keys.get(head.key_id)
    if not signature:
        return f"the head of size {head.tree_size} carries no chain signature (signed before heads were bound)"
    if public is None:
        return f"signed by unknown key {head.key_id}"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(signature, validate=True),
                                                          chain_bytes(head, chain_hash))
    except (InvalidSignature, ValueError):
        return f"the chain signature of the head of size {head.tree_size} does not verify with key {head.key_id}"
    return None


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:32]


class LogKey:
    """The auditor's Ed25519 key: a raw 32-byte seed in a file only its owner reads."""

    def __init__(self, private: Ed25519PrivateKey):
        self.private = private
        self.public = private.public_key().public_bytes_raw()
        self.key_id = key_id(self.public)

    @classmethod
    def load(cls, path: Path) -> "LogKey":
        return cls(Ed25519PrivateKey.from_private_bytes(path.read_bytes()))

    @classmethod
    def create(cls, path: Path) -> "LogKey":
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_bytes_raw())
        return cls(key)

    def sign(self, log_id: str, tree_size: int, root_hash: str, timestamp: int) -> TreeHead:
        signature = self.private.sign(signed_bytes(log_id, tree_size, root_hash, timestamp))
        return TreeHead(log_id, tree_size, root_hash, timestamp, self.key_id, base64.b64encode(signature).decode())

    def bind(self, head: TreeHead, chain_hash: str) -> str:
        """The chain signature of a head this key signed (chain_bytes), base64."""
        return base64.b64encode(self.private.sign(chain_bytes(head, chain_hash))).decode()

    def public_pem(self) -> bytes:
        return public_pem(self.public)

    def proof(self, name: str) -> str:
        """The proof of possession its declaration on the identities topic carries."""
        return prove_possession(name, self.private.private_bytes_raw())[2]


def public_pem(public: bytes) -> bytes:
    return Ed25519PublicKey.from_public_bytes(public).public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def read_public_key(data: bytes) -> bytes:
    """A public key file: PEM (what `mlbus audit key` writes, openssl reads) or the raw key in base64."""
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return key.public_bytes_raw()
    raw = base64.b64decode(data.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw


def signature_problem(head: TreeHead, keys: dict[str, bytes]) -> str | None:
    """Why the head's signature does not hold (None when it does); keys: key id → raw public key."""
    public = keys.get(head.key_id)
    if public is None:
        return f"signed by unknown key {head.key_id} (not a log-signer key on the identities topic, nor --key)"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(head.signature, validate=True),
                                                          head.signed_bytes())
    except (InvalidSignature, ValueError):
        return f"its signature does not verify with key {head.key_id}"
    return None
