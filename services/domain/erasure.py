"""Crypto-shredding of personal data in audit.log (pure apart from AES-GCM and randomness).

On a topic whose catalogue entry lists `personal` fields, the auditor seals a message's original value with
AES-256-GCM under its subject's data key (subject = the message key, the entity id; associated data = the
subject) and keeps in the record's `value` the same record with its personal fields blanked — readable by
anyone, and enough for everything but the personal fields. A dead letter of such a topic keeps no value in
clear at all. The Merkle leaf covers the ciphertext, so deleting the key (a tombstone on audit.keys) makes the
personal fields unreadable forever while every hash, head and proof still verifies.
"""
from __future__ import annotations

import hashlib
import os
import weakref
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .compiled import native

import io

import fastavro

from services.bus.codec import SchemaCatalogue
from services.bus.native import Unplanned, plan, record_plan
from services.bus.errors import BadInput

WHOLE = "*"                  # a dead letter of a personal topic: the whole value is personal


def new_key() -> bytes:
    return os.urandom(32)


def seal_value(value: bytes, subject: str, key: bytes | AESGCM) -> dict:
    """The value encrypted under the subject's key (or that key's AESGCM, made once by a caller sealing many)."""
    nonce = os.urandom(12)
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    return {"subject": subject, "nonce": nonce, "ciphertext": cipher.encrypt(nonce, value, subject.encode())}


def unseal_value(sealed: dict, key: bytes) -> bytes | None:
    """The original value, or None when this key does not open it."""
    try:
        return AESGCM(key).decrypt(sealed["nonce"], sealed["ciphertext"], sealed["subject"].encode())
    except (InvalidTag, ValueError):
        return None


SUBJECT_CHARS = 256          # a subject longer than this, or not UTF-8, is named by its key's digest
DIGEST_PREFIX = "sha256:"    # a subject named by its key's digest; no key's own text begins so


def subject_of(key: bytes | None) -> str:
    """Whose personal data a message holds: its key (the entity id) as text — or, for a key that is not UTF-8, is
    longer than SUBJECT_CHARS, holds a NUL or itself begins "sha256:", "sha256:" and the key's digest. So a subject
    stays an identifier of bounded size (its data key's record on audit.keys and the sealed record in audit.log carry
    it), never holds the NUL that separates a subject from its shard in a data key's name (shards.key_name), and
    names one key only: a key spelling "sha256:<digest>" would otherwise share the data key of the key it digests
    (erasing either erased both). A key's own text never begins "sha256:", every digest name does."""
    if not key:
        return ""
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or len(text) > SUBJECT_CHARS or "\x00" in text or text.startswith(DIGEST_PREFIX):
        return DIGEST_PREFIX + hashlib.sha256(key).hexdigest()
    return text


def redacted(schemas: SchemaCatalogue, value: bytes | None, fields: tuple[str, ...]) -> bytes | None:
    """The value with its personal fields blanked (re-encoded with the local schema of its record); None for
    a dead letter (every byte personal) or a value that does not decode."""
    if value is None or WHOLE in fields:
        return None
    try:
        record, datum = schemas.decode(value)
        blanks = _blanks(schemas, record, fields)
    except (BadInput, KeyError):
        return None
    return schemas.encode(record, {**datum, **blanks})


class Redaction:
    """redacted() for the values of one topic (its record type, its personal fields), in compiled code where it
    can (services/native's Redactor: values written with the local schema, types it reads exactly as fastavro
    does), in Python for the rest — and for whatever the compiled code will not take, so both refuse alike."""

    def __init__(self, schemas: SchemaCatalogue, record: str, fields: tuple[str, ...]):
        self.schemas, self.fields = schemas, fields
        plan = None if native is None or WHOLE in fields else redaction_plan(schemas.schema(record).parsed, fields)
        self.compiled = native.Redactor(schemas.schema(record).prefix, plan) if plan else None

    def __call__(self, value: bytes | None) -> bytes | None:
        if value is not None and self.compiled is not None:
            done = self.compiled(value)
            if done is not None:
                return done
        return redacted(self.schemas, value, self.fields)


def redaction_plan(schema: dict, fields: tuple[str, ...]) -> tuple | None:
    """A record schema (parsed, expanded) as services/native's Redactor takes it (services/bus/native.py's
    plans), each personal field ("blank", its type, its blank encoded by fastavro); None outside the plans."""
    try:
        return record_plan(schema, lambda f: ("blank", plan(f["type"]), _blank_bytes(f["type"])) if f["name"] in fields
                           else plan(f["type"]))
    except Unplanned:
        return None


def _blank_bytes(avro_type) -> bytes:
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, fastavro.parse_schema(avro_type), blank(avro_type))
    except Exception as error:          # a blank this type cannot take (an enum, a record): Python redacts
        raise Unplanned(str(error)) from error
    return out.getvalue()


_BLANKS: "weakref.WeakKeyDictionary[SchemaCatalogue, dict]" = weakref.WeakKeyDictionary()


def _blanks(schemas: SchemaCatalogue, record: str, fields: tuple[str, ...]) -> dict:
    """The blank of each personal field of a record type (worked out once per type: the auditor's hot path)."""
    known = _BLANKS.get(schemas)
    if known is None:
        known = _BLANKS[schemas] = {}
    if (record, fields) not in known:
        types = {f["name"]: f["type"] for f in schemas.schema(record).parsed["fields"]}
        known[record, fields] = {f: blank(types[f]) for f in fields if f in types}
    return {name: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for name, v in known[record, fields].items()}


def blank(avro_type) -> object:
    """The emptiest value of an Avro type: null where allowed, else an empty map, array, string or zero."""
    if isinstance(avro_type, list):
        return None if "null" in avro_type else blank(avro_type[0])
    kind = avro_type.get("type", "") if isinstance(avro_type, dict) else avro_type
    return {"map": {}, "array": [], "string": "", "bytes": b"", "boolean": False}.get(kind, 0)


@dataclass(frozen=True)
class Erasure:
    """What `audit forget` recorded: whose data, when, by whom, why (for explain, export and replay)."""

    subject: str
    at_ms: int
    by: str
    reason: str
    audit_sequence: int
