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
    return page_of(schemas, value)[1]


def page_of(schemas: SchemaCatalogue, value: bytes | None) -> tuple[int | None, list[bytes]]:
    """(the first sequence a page says it holds — None for a v1 record —, the AuditRecord values it holds)."""
    if value is None:
        return None, []
    page = schemas.schema("mlbus.AuditPage").prefix
    if value[:len(page)] == page:
        found = native.page_records(value, page) if native is not None else None
        if found is not None:
            return found
    elif value[:len(page)] == schemas.schema("mlbus.AuditRecord").prefix:
        return None, [value]
    try:
        record, datum = schemas.decode(value)
    except BadInput:
        return None, [value]
    return (datum["first_sequence"], list(datum["records"])) if record == "mlbus.AuditPage" else (None, [value])


def misframed(schemas: SchemaCatalogue, value: bytes | None) -> str | None:
    """Why a page's framing is not its records' (its first sequence is not its first record's), else None. The
    framing is not hashed — the records are —, but readers find a record's page by it."""
    first, records = page_of(schemas, value)
    if first is None:
        return None
    if not records:
        return f"a page says it starts at sequence {first} and holds no record"
    found = sequence_of(schemas, records[0])
    return None if found == first else f"a page says it starts at sequence {first}, its first record is {found}"


def sequence_of(schemas: SchemaCatalogue, value: bytes) -> int | None:
    found = record_head(schemas, value)
    return found[0] if found else None


def record_head(schemas: SchemaCatalogue, value: bytes) -> tuple[int, str] | None:
    """(sequence, source topic) of one AuditRecord value — in compiled code where it reads the whole record, else
    through the codec —, None when it does not decode."""
    if native is not None:
        found = native.record_topic(value, schemas.schema("mlbus.AuditRecord").fingerprint)
        if found is not None:
            return found
    try:
        record = schemas.decode(value, "mlbus.AuditRecord")[1]
    except BadInput:
        return None
    return record["sequence"], record["source_topic"]


def first_sequence(schemas: SchemaCatalogue, value: bytes | None) -> int | None:
    """The sequence of the first record a message holds (a page says it; a v1 record is it), None when unreadable."""
    first, records = page_of(schemas, value)
    return first if first is not None else sequence_of(schemas, records[0]) if records else None


def source_topic(schemas: SchemaCatalogue, value: bytes) -> str | None:
    """The source topic of one AuditRecord value (replay picks records by it); None when it does not decode."""
    found = record_head(schemas, value)
    return found[1] if found else None
