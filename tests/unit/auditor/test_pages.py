"""audit.log in pages: the auditor's compiled pager (services/native/src/pager.rs) and its Python path write the same
records — every topic's hostile messages, signed acts, personal data, an oversize message, a topic outside the
catalogue — in pages within their bounds, checkpoints where they fall; every reader takes a page and a v1 (one
record per message) value alike."""
import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings, strategies as st

from services.auditor.decide import PAGE_BYTES, Log, Page, item, page_event
from services.auditor.handlers import Auditor
from services.domain import merkle, verify_chain as verify
from services.adapters import Anchor
from services.domain.compiled import native
from services.domain.erasure import unseal_value
from services.domain.audited import holding
from services.domain.pages import first_sequence, misframed, records_of, source_topic
from services.domain.tree_head import LogKey
from tests.support.handlers import FakeMessage, audited
from tests.unit.test_no_record_stops_a_service import BUS, accept, hostile_messages

compiled = pytest.mark.skipif(native is None, reason="services/native is not built here")
KEY = LogKey(Ed25519PrivateKey.generate())


def auditor(tmp_path, pager: bool, page_records: int = 1000, every: int = 1000) -> Auditor:
    audit_settings = dataclasses.replace(BUS.settings.audit, page_records=page_records, checkpoint_every=every)
    bus = dataclasses.replace(BUS, settings=dataclasses.replace(BUS.settings, audit=audit_settings))
    audit = Auditor(bus, Log, lambda size, root, at: KEY.sign("t.audit.log", size, root, at), Anchor(tmp_path),
                    accept, read_keys=dict, clock=lambda: 1_800_000_000_000)
    if not pager:
        audit.pager = None
    return audit


def messages() -> list[FakeMessage]:
    """Every topic's first hostile messages, a message too large to keep, one from a topic outside the catalogue."""
    found = [m for topic in sorted(t.name for t in BUS.catalogue if "auditor" in t.consumers)
             for m in hostile_messages(topic)[:15]]
    found.append(FakeMessage(BUS.catalogue.physical("inference.requests"), b"k" * 1000,
                             b"\xc3\x01" + b"a" * (1 << 20), 0, [("ce_id", b"x" * 1000)]))
    found.append(FakeMessage("t.not-in-the-catalogue", b"k", b"v", 0, [("ce_source", b"\xff\xfeshop")]))
    found += [FakeMessage(BUS.catalogue.physical("data.batches"), b"k", b"b" * 700_000, 0) for _ in range(2)]
    for offset, message in enumerate(found):
        message._offset = offset
    return found


def opened(records: list[dict], events) -> list[dict]:
    """Records with personal data opened (the two auditors draw their own keys and nonces) and the chain's
    hashes dropped (they cover the ciphertext)."""
    keys = {e.value["subject"]: e.value["key"] for e in events if getattr(e, "record", None) == "mlbus.DataKey"}
    return [{**r, "hash": None, "prev_hash": None, "sealed": r["sealed"] and (
        r["sealed"]["subject"], unseal_value(r["sealed"], keys[r["sealed"]["subject"]]))} for r in records]


@compiled
def test_the_pager_writes_what_the_python_path_writes(tmp_path):
    batch = messages()
    fast_events = auditor(tmp_path / "a", pager=True, page_records=50, every=64)(batch)
    slow_events = auditor(tmp_path / "b", pager=False, page_records=50, every=64)(messages())
    fast, slow = audited(BUS.schemas, fast_events), audited(BUS.schemas, slow_events)
    assert len(fast) == len(batch) and [r["sequence"] for r in fast] == list(range(1, len(batch) + 1))
    assert opened(fast, fast_events) == opened(slow, slow_events)
    assert any(r["sealed"] for r in fast) and any(r["actor"].startswith("unverified:") for r in fast)
    assert any(r["source_topic"] == "not-in-the-catalogue" for r in fast)
    for events, records in ((fast_events, fast), (slow_events, slow)):
        heads = [e.value for e in events if e.record == "mlbus.AuditCheckpoint"]
        assert [h["sequence"] for h in heads] == list(range(64, len(batch) + 1, 64))
        assert verify(records).broken is None
        assert verify(records).root == merkle.root([merkle.leaf_hash(canonical) for canonical in map(
            __import__("services.domain.audit", fromlist=["canonical_bytes"]).canonical_bytes, records)]).hex()
        assert heads[-1]["root_hash"] == verify(records[:heads[-1]["sequence"]]).root


@compiled
def test_without_personal_data_the_pages_are_the_same_bytes(tmp_path):
    personal = {BUS.catalogue.physical(t.name) for t in BUS.catalogue if t.personal}
    plain = [m for m in messages() if m.topic() not in personal]
    fast = auditor(tmp_path / "a", pager=True, page_records=7, every=10)(plain)
    slow = auditor(tmp_path / "b", pager=False, page_records=7, every=10)([m for m in messages()
                                                                           if m.topic() not in personal])
    pages = [e.encoded for e in fast if e.record == "mlbus.AuditPage"]
    assert pages == [e.encoded for e in slow if e.record == "mlbus.AuditPage"]
    assert sum(len(records_of(BUS.schemas, p)) for p in pages) == len(plain)


@pytest.mark.parametrize("pager", [True, False] if native is not None else [False])
def test_pages_keep_their_bounds_and_read_back(tmp_path, pager):
    events = auditor(tmp_path, pager=pager, page_records=9)(messages())
    pages = [e for e in events if e.record == "mlbus.AuditPage"]
    cap = int(BUS.catalogue["audit.log"].config["max.message.bytes"])
    sequence = 1
    for page in pages:
        values = records_of(BUS.schemas, page.encoded)
        assert 1 <= len(values) <= 9 and len(page.encoded) <= cap
        assert len(values) == 1 or sum(map(len, values)) <= PAGE_BYTES          # a larger record is a page alone
        assert first_sequence(BUS.schemas, page.encoded) == sequence == page.value["first_sequence"]
        decoded = BUS.schemas.decode(page.encoded, "mlbus.AuditPage")[1]          # the codec reads what was written
        assert decoded == {"first_sequence": sequence, "records": values}
        assert [source_topic(BUS.schemas, v) for v in values] == \
            [BUS.schemas.decode(v, "mlbus.AuditRecord")[1]["source_topic"] for v in values]
        sequence += len(values)
    batches = [p for p in pages for v in records_of(BUS.schemas, p.encoded) if b"b" * 700_000 in v]
    assert len(batches) == 2 and batches[0] is not batches[1]                 # together they would pass 1 MiB


def test_a_v1_record_reads_as_a_page_of_one():
    events = auditor_records()
    value = BUS.schemas.encode("mlbus.AuditRecord", events[0])
    assert records_of(BUS.schemas, value) == [value] and first_sequence(BUS.schemas, value) == 1
    assert records_of(BUS.schemas, None) == []


def auditor_records() -> list[dict]:
    from services.auditor.decide import Crossing, append
    crossings = [Crossing("t", 0, i, i, b"k", [], b"v") for i in range(3)]
    events, _ = append(Log(), crossings, 1, 0, lambda *a: None)
    return [e.value for e in events]


def test_a_page_event_is_what_the_codec_writes():
    records = [BUS.schemas.encode("mlbus.AuditRecord", r) for r in auditor_records()]
    page = Page()
    for n, value in enumerate(records):
        page.add(item(value), 1, n + 1)
    event = page_event(page, BUS.schemas.schema("mlbus.AuditPage").prefix, "log")
    assert event.encoded == BUS.schemas.encode("mlbus.AuditPage", {"first_sequence": 1, "records": records})


@compiled
@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=300), st.integers(0, 40))
def test_the_compiled_frontier_grows_as_the_python_one(leaves, split):
    python, fast = merkle.Frontier(), native.Frontier()
    for leaf in leaves[:split]:
        python.append(leaf)
        fast.append(leaf)
    resumed = native.Frontier(python.size, python.hashes)
    for leaf in leaves[split:]:
        python.append(leaf)
        resumed.append(leaf)
    assert (resumed.size, resumed.hashes, resumed.root()) == (python.size, python.hashes, python.root())
    with pytest.raises(ValueError):
        native.Frontier(3, [b"x" * 32])


def test_a_page_whose_framing_lies_is_found():
    records = [BUS.schemas.encode("mlbus.AuditRecord", r) for r in auditor_records()]
    honest = BUS.schemas.encode("mlbus.AuditPage", {"first_sequence": 1, "records": records})
    lying = BUS.schemas.encode("mlbus.AuditPage", {"first_sequence": 2, "records": records})
    assert misframed(BUS.schemas, honest) is None and misframed(BUS.schemas, records[0]) is None
    assert misframed(BUS.schemas, lying) == "a page says it starts at sequence 2, its first record is 1"
    assert first_sequence(BUS.schemas, records[2]) == 3 and first_sequence(BUS.schemas, b"junk") is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 3)), min_size=1, max_size=60), st.data())
def test_the_page_holding_a_record_is_found_in_a_few_reads(layout, data):
    """A log of pages of any sizes, each followed by gaps (transaction markers, aborted records): the search ends on
    the page that holds the record, reading about log(pages) messages at most."""
    messages, offset, sequence = {}, 0, 1
    for size, gap in layout:
        messages[offset] = sequence
        offset, sequence = offset + 1 + gap, sequence + size
    wanted = data.draw(st.integers(1, sequence - 1))
    reads = []

    def read_at(at):
        reads.append(at)
        return next(((o, s) for o, s in sorted(messages.items()) if o >= at), None)
    found = holding(read_at, wanted, 0, offset)
    assert messages[found] <= wanted and all(s > wanted for o, s in messages.items() if o > found)
    assert len(reads) <= 2 * max(1, len(layout)).bit_length() + 2
