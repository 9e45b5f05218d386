"""audit.log's framing, pure: a message holds a page of consecutive AuditRecords (an AuditPage), or — in a log
written before pages, read as a v1 log — one AuditRecord. Every reader of audit.log takes records through here,
so both framings read alike, even mixed in one log. The records inside are exactly what a one-record message
carried: their sequences, hashes and Merkle leaves do not depend on the framing."""
from __future__ import annotations

from .compiled import native
from services.bus.codec import SchemaCatalogue
from services.bus.errors import BadInput


def records_of(schemas: SchemaCatalogue, value: bytes | None) -> list[bytes]:
    """The AuditRecord values one audit.log message holds, in order (compiled where services/native is built).
    A value that is neither framing reads as one record, for the record's own reader to refuse."""
    if value is None:
        return []
    page = schemas.schema("mlbus.AuditPage").prefix
    if value[:len(page)] == page:
        found = native.page_records(value, page) if native is not None else None
        if found is not None:
            return found[1]
    elif value[:len(page)] == schemas.schema("mlbus.AuditRecord").prefix:
        return [value]
    try:
        record, datum = schemas.decode(value)
    except BadInput:
        return [value]
    return list(datum["records"]) if record == "mlbus.AuditPage" else [value]


def first_sequence(schemas: SchemaCatalogue, value: bytes | None) -> int | None:
    """The sequence of the first record a message holds (a page says it; a v1 record is it), None when unreadable."""
    try:
        record, datum = schemas.decode(value)
    except BadInput:
        return None
    if record == "mlbus.AuditPage":
        return int(datum["first_sequence"])
    return int(datum["sequence"]) if record == "mlbus.AuditRecord" else None


def source_topic(schemas: SchemaCatalogue, value: bytes) -> str | None:
    """The source topic of one AuditRecord value, read from its first fields where it can (replay picks records
    by it without decoding the rest); None when it does not decode."""
    if native is not None:
        found = native.record_topic(value, schemas.schema("mlbus.AuditRecord").fingerprint)
        if found is not None:
            return found[1]
    try:
        return schemas.decode(value, "mlbus.AuditRecord")[1]["source_topic"]
    except BadInput:
        return None
