"""Red team on audit.log's pages (issue 34, part 1): inputs on which the compiled pager and the Python path part,
the auditor crashes, a page passes audit.log's max.message.bytes, or a reader misreads or hides a record. Each test
here failed when written; the comment above it names the class. Classes that held are listed in the report."""
import importlib

import pytest
from hypothesis import given, settings, strategies as st

from services.auditor.decide import Crossing, Log, Page, append, item, page_event
from services.bus.consumed import wire_size
from services.bus.edge import MAX_RECORD_BYTES
from services.bus.publish import Publisher
from services.bus.runtime import Forward
from services.domain import pages
from services.domain.pages import misframed, source_topic
from tests.support.handlers import FakeMessage, audited
from tests.unit.auditor.test_pages import BUS, auditor, compiled, native

CAP = int(BUS.catalogue["audit.log"].config["max.message.bytes"])          # 2,359,296
PAGER = [True, False] if native is not None else [False]


class Dropped:
    def produce(self, *args, **kwargs):
        pass


def refused(events) -> list[str]:
    """What the runtime's publisher refuses among the auditor's events (runtime._publish re-raises a refusal for
    the auditor, outside the poison ledger's span: the service crashes at every start, no strike is counted)."""
    publisher, found = Publisher(BUS, "auditor", Dropped()), []
    for event in events:
        if isinstance(event, Forward):
            continue
        try:
            publisher.prepared(event)
        except Exception as refusal:            # noqa: BLE001 - OutputRefused, reported
            found.append(f"{event.record}: {refusal}")
    return found


def physical(topic: str) -> str:
    return BUS.catalogue.physical(topic)


# CRASH, compiled only (divergence). A record larger than PAGE_BYTES (a message near 1 MiB: its record adds ~300
# bytes) alone in an empty page leaves page.room() negative, and when the page is not flushed at once the next
# seal_run call cannot take it as `bytes_left` (usize): OverflowError out of the auditor, for any message after it in
# the consumed batch. Two ways there: a signed act (Python seals it in the pager's place, and the SPECIAL branch never
# flushes after it) — data.batches is one, and its batches legitimately come near 1 MiB —; or any topic's record
# sealed by the pager when the run's room is 1 (the next record is a checkpoint's: every - sequence % every), which
# stops it with ROOM, not BYTES. The poison ledger recovers after one death (the batch's messages handled alone); the
# Python path writes the pages.
@pytest.mark.parametrize("pager", PAGER)
@pytest.mark.parametrize("way", ["signed act", "at a checkpoint"])
def test_a_record_larger_than_a_page_then_any_message_is_audited(tmp_path, pager, way):
    audit = auditor(tmp_path, pager=pager, every=2)
    before = audit([FakeMessage(physical("outcomes"), b"k", b"v", 0)]) if way == "at a checkpoint" else []
    large = FakeMessage(physical("data.batches" if way == "signed act" else "inference.predictions"), b"k",
                        b"b" * (MAX_RECORD_BYTES - 30), 1)
    events = audit([large, FakeMessage(physical("outcomes"), b"k", b"v", 2)])
    expected = [0, 1, 2] if before else [1, 2]
    assert [r["source_offset"] for r in audited(BUS.schemas, before + events)] == expected


class Segfault(BaseException):
    """Stands for the process dying: a real client's second headers() hands back the list it left broken (a tuple
    whose key is NULL), and unpacking it dereferences NULL."""


class NullKey:
    def __iter__(self):
        raise Segfault("unpacked a header tuple whose key is NULL")


class UnreadableHeaders(FakeMessage):
    """confluent_kafka's Message for a header key that is not UTF-8 (Message_headers / c_headers_to_py): the first
    headers() raises SystemError and keeps the broken list; every later call returns that list without raising."""

    reads = 0

    def headers(self):
        self.reads += 1
        if self.reads == 1:
            raise SystemError("<method 'headers'> returned a result with an exception set")
        return [NullKey()]


# CRASH (process death, SIGSEGV), compiled only (divergence). pager.rs `consumed` calls message.headers() itself,
# not through consumed.headers_of: its SystemError makes the run stop (SPECIAL), and then Python's _crossing reads
# the headers through headers_of — which has not seen this message, so calls the client a second time and gets the
# broken list. services/bus/consumed.py's rule (read once; tests/unit/bus/test_outputs_and_dead_letters.py) is
# broken by the pager. The poison budget dead-letters it after 3 process deaths: the auditor dies and re-reads its
# log 3 times per such message, and the message is on record only as its DLQ copy.
@pytest.mark.parametrize("pager", PAGER)
def test_a_header_key_that_is_not_utf8_is_read_from_the_client_once(tmp_path, pager):
    message = UnreadableHeaders(physical("inference.predictions"), b"k", b"v", 0)
    try:
        events = auditor(tmp_path, pager=pager)([message])
    except Segfault as died:
        pytest.fail(f"the auditor read the headers {message.reads} times: {died}")
    assert message.reads == 1
    assert audited(BUS.schemas, events)[0]["headers"] == [{"key": "mlbus.headers",
                                                          "value": b"unreadable: a header key is not UTF-8"}]


# PAGE PAST THE CAP -> CRASH LOOP, both paths. The oversize rule counts the message's bytes (at most 1 MiB), but the
# record repeats ce_source in `actor` and ce_type in `record_type`, decoded with U+FFFD for every invalid byte: one
# byte becomes three. 1 MiB of 0xFF headers (kilobytes on the source topic, compressed) is a 4 MiB record, a page
# the publisher refuses — re-raised outside the poison ledger, so the auditor crashes at every start, for ever.
@pytest.mark.parametrize("pager", PAGER)
def test_ce_source_and_ce_type_not_utf8_keep_the_page_under_the_cap(tmp_path, pager):
    half = MAX_RECORD_BYTES // 2 - 10
    message = FakeMessage(physical("outcomes"), None, None, 0, [("ce_source", b"\xff" * half),
                                                                ("ce_type", b"\xff" * half)])
    events = auditor(tmp_path, pager=pager)([message])
    assert [len(e.encoded) for e in events if e.record == "mlbus.AuditPage" and len(e.encoded) > CAP] == []
    assert refused(events) == []


# PAGE PAST THE CAP -> CRASH LOOP, both paths. A personal topic's key is its subject, sealed beside the ciphertext
# as a string decoded with U+FFFD: a key of 1 MiB of 0xFF is 1 MiB as the record's key plus 3 MiB as the subject.
@pytest.mark.parametrize("pager", PAGER)
def test_a_personal_key_that_is_not_utf8_keeps_the_page_under_the_cap(tmp_path, pager):
    value = b"\xc3\x01" + b"\0" * 8                # any value: sealed whatever it holds
    message = FakeMessage(physical("inference.requests"), b"\xff" * (MAX_RECORD_BYTES - 100), value, 0)
    events = auditor(tmp_path, pager=pager)([message])
    assert [len(e.encoded) for e in events if e.record == "mlbus.AuditPage" and len(e.encoded) > CAP] == []
    assert refused(events) == []


# PAGE PAST THE CAP -> CRASH LOOP, both paths. consumed.wire_size (and pager.rs `chars().count()`) counts a header
# key's characters, not its bytes: a key of a million U+10000 counts 1 MiB and is 4 MiB of UTF-8 in the record.
@pytest.mark.parametrize("pager", PAGER)
def test_a_header_key_of_four_byte_characters_keeps_the_page_under_the_cap(tmp_path, pager):
    message = FakeMessage(physical("inference.predictions"), b"k", b"v", 0,
                          [("\U00010000" * (MAX_RECORD_BYTES - 100), b"x")])
    events = auditor(tmp_path, pager=pager)([message])
    assert [len(e.encoded) for e in events if e.record == "mlbus.AuditPage" and len(e.encoded) > CAP] == []
    assert refused(events) == []


# CRASH LOOP, both paths (not new with pages, found on the way). A personal message's key becomes a DataKey for
# audit.keys (1 MiB cap) whose Kafka key and `subject` both hold it: a 600 KB key — well within the source topic's
# limit — makes a 1.2 MB DataKey the publisher refuses, re-raised outside the poison ledger: a crash at every start.
@pytest.mark.parametrize("pager", PAGER)
def test_a_long_subject_gets_a_data_key_audit_keys_takes(tmp_path, pager):
    message = FakeMessage(physical("inference.requests"), b"s" * 600_000, b"\xc3\x01" + b"\0" * 8, 0)
    events = auditor(tmp_path, pager=pager)([message])
    assert refused(events) == []


def records(count: int) -> list[bytes]:
    crossings = [Crossing("outcomes", 0, i, i, b"k", [], b"v") for i in range(count)]
    events, _ = append(Log(), crossings, 1, 0, lambda *a: None)
    return [BUS.schemas.encode("mlbus.AuditRecord", e.value) for e in events]


# READER DIVERGENCE (compiled vs Python). source_topic reads a record's first fields only where services/native is
# built, so a record damaged further on (truncated, or bytes after it) still names its topic; the Python path says
# None ("when it does not decode"). audit_records' filter (replay, rebuild-registry) then drops such a record
# silently in a pure-Python build and raises on it in a compiled one.
@compiled
@pytest.mark.parametrize("damage", ["truncated", "trailing"])
def test_source_topic_of_a_damaged_record_is_the_same_compiled_or_not(monkeypatch, damage):
    value = records(1)[0]
    damaged = value[:-5] if damage == "truncated" else value + b"\0"
    fast = source_topic(BUS.schemas, damaged)
    monkeypatch.setattr(pages, "native", None)
    assert fast == source_topic(BUS.schemas, damaged)


def page(values: list[bytes], first_sequence: int) -> bytes:
    built = Page()
    for value in values:
        built.add(item(value), 1, first_sequence)
    return page_event(built, BUS.schemas.schema("mlbus.AuditPage").prefix, "log").encoded


def audit_log_module():
    for name in ("services.adapters.audit_log", "services.domain.audit_log"):   # the module is moving
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("audit_log")


def read_between(monkeypatch, log: dict[int, bytes], first: int, last: int) -> list[int]:
    """records_between's sequences on an in-memory audit.log (offset → value): its consumer and reads faked."""
    audit_log = audit_log_module()

    class Consumer:
        def __init__(self, config): pass
        def get_watermark_offsets(self, partition, timeout=None): return 0, len(log)
        def close(self): pass

    def messages_from(consumer, topic, offset, count, end, timeout_s, until=None):
        found = []
        for at in range(offset, end):
            if until is not None and until(log[at]):
                break
            found.append((at, log[at]))
            if count is not None and len(found) == count:
                break
        return found

    monkeypatch.setattr(audit_log, "Consumer", Consumer)
    monkeypatch.setattr(audit_log, "_messages_from", messages_from)
    monkeypatch.setattr(audit_log, "base_config", lambda settings: {})        # no broker: the consumer is fake
    return [r["sequence"] for r in audit_log.records_between(BUS, first, last)]


def test_records_between_reads_an_honest_log(monkeypatch):
    """Control: the fakes read an honest log of pages right, so the tests below fail on the framing alone."""
    values = records(30)
    log = {0: page(values[0:10], 1), 1: page(values[10:20], 11), 2: page(values[20:30], 21)}
    assert read_between(monkeypatch, log, 7, 12) == list(range(7, 13))


# READER HIDES RECORDS (insider: a page whose first_sequence lies). records_between trusts the framing to find the
# page holding `first` and returns what it read from there, without checking that the answer starts at `first`:
# records 7-10 are silently missing. verify reports this page (misframed), but the console's refresh
# (records_between(read_to + 1), then read_to moves past) takes the short answer without a word.
def test_records_between_does_not_hide_records_behind_a_page_whose_framing_lies(monkeypatch):
    values = records(30)
    log = {0: page(values[0:10], 1), 1: page(values[10:20], 5), 2: page(values[20:30], 21)}
    assert read_between(monkeypatch, log, 7, 12) == list(range(7, 13))


def empty_page(first_sequence: int) -> bytes:
    return page_event(Page(first_sequence=first_sequence), BUS.schemas.schema("mlbus.AuditPage").prefix, "log").encoded


# READER HIDES RECORDS, and verify does not see it (insider: a page of no records). misframed() passes a page without
# records (`if first is None or not records: return None`), and the chain is whole (the page adds no record), so
# verify says the log holds; yet first_sequence() gives the number the empty page claims, and records_between starts
# there: records 7-10 silently missing.
def test_a_page_of_no_records_is_misframed(monkeypatch):
    assert misframed(BUS.schemas, empty_page(7)) is not None


def test_records_between_does_not_hide_records_behind_a_page_of_no_records(monkeypatch):
    values = records(20)
    log = {0: page(values[0:10], 1), 1: empty_page(7), 2: page(values[10:20], 11)}
    assert read_between(monkeypatch, log, 7, 12) == list(range(7, 13))


# THE CLASS behind the cap findings above (claims, subjects, header keys): whatever a message at the edge's limit is
# made of — a key of invalid UTF-8 or four-byte characters, header keys of four-byte characters, ce_source and
# ce_type of invalid UTF-8, any other header, the value —, on a personal topic or not, on either path, every page and
# every data key the auditor writes fits its topic.
PARTS = ("key-ff", "key-4byte", "header-key-4byte", "ce_source-ff", "ce_type-ff", "other-header", "value")


def at_the_limit(shares: list[int]) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    """A message of MAX_RECORD_BYTES bytes (key, value, headers: what wire_size counts), split between the parts."""
    budget = [MAX_RECORD_BYTES * share // sum(shares) for share in shares]
    key, headers, value = b"", [], b"v" * budget[PARTS.index("value")]
    for part, size in zip(PARTS, budget):
        if size < 16:
            continue                            # a part with no share (a header would still cost its name)
        if part == "key-ff":
            key += b"\xff" * size
        elif part == "key-4byte":
            key += ("\U00010000" * (size // 4)).encode()
        elif part == "header-key-4byte":
            headers.append(("\U00010000" * max(1, (size - 1) // 4), b"x"))
        elif part in ("ce_source-ff", "ce_type-ff"):
            headers.append((part.split("-")[0], b"\xff" * max(0, size - len(part.split("-")[0]))))
        elif part == "other-header":
            headers.append(("other", b"h" * max(0, size - 5)))
    return key, headers, value


@pytest.mark.parametrize("pager", PAGER)
@pytest.mark.parametrize("topic", ["inference.requests", "outcomes"])
@settings(max_examples=12, deadline=None, derandomize=True)
@given(shares=st.lists(st.integers(0, 4), min_size=len(PARTS), max_size=len(PARTS)).filter(any))
def test_a_message_at_the_limit_never_makes_a_page_or_a_key_its_topic_refuses(tmp_path_factory, pager, topic, shares):
    key, headers, value = at_the_limit(shares)
    message = FakeMessage(physical(topic), key, value, 0, headers)
    assert MAX_RECORD_BYTES - 64 < wire_size(key, value, headers) <= MAX_RECORD_BYTES     # at the limit, not over it
    events = auditor(tmp_path_factory.mktemp("a"), pager=pager)([message])
    assert not refused(events)
    assert len(audited(BUS.schemas, events)) == 1
