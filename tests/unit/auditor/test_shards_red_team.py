"""Red team of audit.log in shards (issue 34): hostile keys and erasures across shards, the combined checkpoint,
a shard's transaction aborted — with the auditor's handler over in-memory messages, no broker. A test marked
xfail(strict) is a finding: it passes once the finding is fixed (and then strict xfail turns it red: drop the mark)."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.decide import Log
from services.auditor.handlers import Auditor, Combine
from services.adapters import Anchor
from services.bus.runtime import Forward
from services.bus.signing import Verdict
from services.domain import (Frontier, LogKey, key_name, keys_of_shard, shard_log_id, shard_of_log_id, subject_of,
                             subject_of_key)
from services.domain.compiled import native
from services.domain.shard_heads import combined_log_id
from tests.unit.auditor.test_erasure import bus_without_broker, erasure, request

LOG = "t.audit.log"
KEY = LogKey(Ed25519PrivateKey.generate())
KEYS = {KEY.key_id: KEY.public}
PAGERS = [True, False] if native is not None else [False]
ERASURES = ("t.audit.erasures", 0)


def admin_only(message, roles):
    """The identities topic as it should be: only `lead` holds the role admin."""
    signer = message.value.get("signer")
    if "admin" in roles and signer != "lead":
        return Verdict(refusal=f"{signer} lacks the role admin")
    return Verdict(signer=signer, signer_key="k")


def shard_auditor(bus, tmp_path, shard: int, pager: bool, observed=frozenset(), read_log=Log, clock=None,
                  combine=None) -> Auditor:
    audit = Auditor(bus, read_log, lambda size, root, at: KEY.sign(shard_log_id(LOG, shard), size, root, at),
                    Anchor(tmp_path), admin_only, read_keys=dict, shard=shard, observed=frozenset(observed),
                    clock=clock or (lambda: 1_800_000_000_000), combine=combine, bind=KEY.bind)
    if not pager:
        audit.pager = None
    return audit


def live_keys(events) -> dict[str, bytes | None]:
    """audit.keys after compaction, as far as these events go: each name's last write (None: a tombstone)."""
    state: dict[str, bytes | None] = {}
    for event in events:
        if isinstance(event, Forward) and event.physical_topic.endswith("audit.keys"):
            state[event.key.decode()] = event.value
        elif getattr(event, "record", None) == "mlbus.DataKey":
            state[event.key] = event.value["key"]
    return {name: key for name, key in state.items() if key is not None}


# --- Erasures --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pager", PAGERS)
def test_the_shard_that_owns_the_erasure_partition_erases_data_that_came_before_it_in_the_batch(tmp_path, pager):
    """The control for the next test: in batch order, ana's request then an admin's erasure of ana."""
    bus = bus_without_broker()
    events = shard_auditor(bus, tmp_path, 0, pager)([request(bus, "ana", 0), erasure(bus, "ana", "lead", 1)])
    assert key_name("ana", 0) not in live_keys(events)


@pytest.mark.parametrize("pager", PAGERS)
def test_a_shard_observing_the_erasure_partition_erases_data_that_came_before_it_in_the_batch(tmp_path, pager):
    """The same batch in a shard that observes the erasure partition (another shard audits it): handlers.py
    __call__ takes the observed messages out and erases first, then seals ana's earlier request under a new key —
    which then stands on audit.keys after the tombstone, so ana's data stays readable after her erasure."""
    bus = bus_without_broker()
    audit = shard_auditor(bus, tmp_path, 1, pager, observed={ERASURES})
    events = audit([request(bus, "ana", 0), erasure(bus, "ana", "lead", 1)])
    assert key_name("ana", 1) not in live_keys(events) and "ana" not in audit.keys


@pytest.mark.parametrize("pager", PAGERS)
@pytest.mark.parametrize("shard", [0, 1])
def test_a_non_admins_erasure_deletes_nothing_in_any_shard(tmp_path, pager, shard):
    """Held: a forged erasure (signed by someone who is no admin), owned or observed, deletes no key."""
    bus = bus_without_broker()
    audit = shard_auditor(bus, tmp_path, shard, pager, observed={ERASURES} if shard else frozenset())
    made = audit([request(bus, "ana", 0)])
    after = audit([erasure(bus, "ana", "mallory", 1)])
    assert key_name("ana", shard) in live_keys(made + after) and "ana" in audit.keys


@pytest.mark.parametrize("pager", PAGERS)
def test_an_erasure_observed_before_the_shard_has_a_key_is_a_harmless_tombstone(tmp_path, pager):
    """Held: a shard with no key of ana yet deletes its (absent) key; ana's later data gets a key of its own."""
    bus = bus_without_broker()
    audit = shard_auditor(bus, tmp_path, 2, pager, observed={ERASURES})
    first = audit([erasure(bus, "ana", "lead", 0)])
    assert [e.key for e in first if isinstance(e, Forward)] == [key_name("ana", 2).encode()]
    later = audit([request(bus, "ana", 1)])
    assert key_name("ana", 2) in live_keys(first + later)


@pytest.mark.parametrize("pager", PAGERS)
def test_an_admins_erasure_of_a_long_entity_id_deletes_its_data_key(tmp_path, pager):
    bus = bus_without_broker()
    entity = "customer-" + "7" * 300                       # `mlbus audit forget` sends the entity id as given
    events = shard_auditor(bus, tmp_path, 0, pager)([request(bus, entity, 0), erasure(bus, entity, "lead", 1)])
    assert subject_of(entity.encode()).startswith("sha256:")
    assert live_keys(events) == {}


def test_an_erasure_subject_holding_the_nul_separator_deletes_no_key(tmp_path):
    """Held: an admin's erasure of 'ana\\0shard-1' would make shard 0 tombstone shard 1's key of ana (handlers.py _erase
    uses the subject as it comes) — but the codec refuses a NUL in a string field, so it is audited as bytes and
    deletes nothing."""
    bus = bus_without_broker()
    events = shard_auditor(bus, tmp_path, 0, False)([erasure(bus, "ana\x00shard-1", "lead", 0)])
    assert [e for e in events if isinstance(e, Forward)] == []


@pytest.mark.parametrize("pager", PAGERS)
@pytest.mark.parametrize("key", [b"ana\x00shard-1", b"\xff\xfe", b"a" * 257, "é".encode() * 256 + b"\x00"])
@pytest.mark.parametrize("shard", [0, 1, 2])
def test_a_hostile_message_key_makes_only_this_shards_key(tmp_path, pager, key, shard):
    """Held: on the compiled and the Python path, in any shard, a NUL-bearing, non-UTF-8 or overlong key names one
    data key of this shard (by digest), which reads back as this shard's."""
    bus = bus_without_broker()
    message = request(bus, "x", 0)
    message._key = key
    events = shard_auditor(bus, tmp_path, shard, pager)([message])
    names = list(live_keys(events))
    assert names == [key_name(subject_of(key), shard)] and subject_of_key(names[0]) == (subject_of(key), shard)


# --- The combined checkpoint -----------------------------------------------------------------------------------------

class Tail:
    """audit.checkpoints as shard 0's copy follows it (CheckpointTail): what has been committed since the last look."""

    def __init__(self):
        self.pending: list[dict] = []

    def new(self) -> list[dict]:
        found, self.pending = self.pending, []
        return found

    def close(self) -> None:
        pass


def interval_bus(bus, every: int = 0):
    audit = dataclasses.replace(bus.settings.audit, head_interval_s=30, checkpoint_every=every)
    return dataclasses.replace(bus, settings=dataclasses.replace(bus.settings, audit=audit))


ZEROS = "0" * 64


def shard_zero(bus, tmp_path, now: list[int], tail: Tail, chain_at=lambda shard, sequence: ZEROS) -> Auditor:
    """Shard 0's auditor with the combine; `chain_at`: the shards' committed chain hashes (by default a log whose
    every record hashes to zeros, which the heads below are bound to)."""
    combine = Combine(tail, LOG, 3, KEYS, lambda size, root, at: KEY.sign(combined_log_id(LOG), size, root, at),
                      chain_at)
    return shard_auditor(interval_bus(bus), tmp_path / "shard-0", 0, False, clock=lambda: now[0], combine=combine)


def bound(head, chain_hash: str = ZEROS) -> dict:
    """A shard head as the auditor's checkpoint carries it: bound to the chain hash at its size."""
    return {"sequence": head.tree_size, "hash": chain_hash, "checkpoint_at": 1, "log_id": head.log_id,
            "root_hash": head.root_hash, "signed_at": head.timestamp, "key_id": head.key_id,
            "signature": head.signature, "chain_signature": KEY.bind(head, chain_hash)}


def reread(log: Log) -> Log:
    """The log as read_log finds it after a commit: its chain head and tree (a copy, as the broker keeps it)."""
    return Log.resumed(log.head, Frontier(log.tree.size, [bytes(h) for h in log.tree.hashes]))


def heads_of(events) -> list[dict]:
    return [e.value for e in events if getattr(e, "record", None) == "mlbus.AuditCheckpoint"]


def shard_one_history(bus, anchor, every: int, batches: list[int], aborts: set[int],
                      pager: bool = False) -> tuple[list, list]:
    """Shard 1 audits batches of requests (their sizes), a head every `every` records; the transactions of the
    batches in `aborts` abort (a fenced zombie's, a broker error's) and are redone smaller, at another time: their
    records never reach the log. (The events committed, the events aborted.)"""
    ms = [1_800_000_000_000]
    committed_log: list[Log] = [Log()]
    shard_one = shard_auditor(interval_bus(bus, every=every), anchor, 1, pager, clock=lambda: ms[0],
                              read_log=lambda: reread(committed_log[-1]))
    committed, aborted, offset = [], [], 0
    for index, size in enumerate(batches):
        batch = [request(bus, f"e{offset + i}", offset + i) for i in range(size)]
        if index in aborts:
            aborted += shard_one(batch)
            shard_one.forget_uncommitted()
            ms[0] += 1_000
            batch = batch[:max(1, size // 2)]
        committed += shard_one(batch)
        shard_one.on_committed()
        committed_log.append(reread(shard_one.log_state))
        offset, ms[0] = offset + len(batch), ms[0] + 1_000
    return committed, aborted


def committed_chain(bus, events) -> dict[int, str]:
    """Shard 1's committed records' chain hashes by sequence: what `chain_at` reads on audit.log."""
    return {r["sequence"]: r["hash"] for r in audited_records(bus, events)}


def test_the_combined_head_never_covers_a_head_of_an_aborted_transaction(tmp_path):
    """Was a finding. Shard 1 commits heads at 5 and 10; a transaction before that signed heads at 10 and 15 and was
    aborted: its records never reached the log and the redo sealed others (another time). Whoever can read
    uncommitted and write audit.checkpoints republishes the aborted head at 15 — as it was, or with the committed
    chain hash beside it: shard 0 signed it as shard 1's head (it took any head its key signed)."""
    bus = bus_without_broker()
    committed_events, aborted_events = shard_one_history(bus, tmp_path / "shard-1", 5, [5, 10], {1})
    committed, aborted = heads_of(committed_events), heads_of(aborted_events)
    assert [h["sequence"] for h in aborted] == [10, 15] and [h["sequence"] for h in committed] == [5, 10]
    assert aborted[0]["root_hash"] != committed[1]["root_hash"]            # the aborted ones are a fork
    chain = committed_chain(bus, committed_events)
    swapped = {**aborted[0], "hash": chain[10]}                            # bound to the fork's hash, not this one
    for republished in (aborted[1], aborted[0], swapped, {**swapped, "chain_signature": None}):
        now, tail = [2_000_000_000_000], Tail()
        tail.pending = [republished] + committed
        audit = shard_zero(bus, tmp_path, now, tail, chain_at=lambda shard, sequence: chain.get(sequence))
        [combined] = audit.tick()
        assert combined.value["shard_heads"][1] == {"shard": 1, "tree_size": 10, "root_hash": committed[1]["root_hash"]}


BUS_ONCE: list = []


def bus_once():
    if not BUS_ONCE:
        BUS_ONCE.append(bus_without_broker())
    return BUS_ONCE[0]


def tampered(head: dict, chain: dict[int, str], committed: list[dict], how: str) -> dict:
    """An aborted head as an insider may republish it: as it was, beside the committed chain hash at its size, without
    its chain signature, or with the chain signature of the committed head of its size."""
    hash_here = chain.get(head["sequence"], head["hash"])
    same_size = [c for c in committed if c["sequence"] == head["sequence"]]
    return {"verbatim": head, "swapped": {**head, "hash": hash_here},
            "unbound": {**head, "hash": hash_here, "chain_signature": None},
            "transplanted": {**head, "hash": hash_here,
                             "chain_signature": same_size[0]["chain_signature"] if same_size else None}}[how]


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.integers(2, 6), st.lists(st.integers(1, 12), min_size=1, max_size=5), st.data())
def test_no_republished_head_of_an_aborted_transaction_is_ever_combined(every, batches, data):
    """The class: whatever the batches, the heads and which transactions abort, and however an insider republishes
    the aborted heads (as they were, beside the committed chain hash, unbound, with another head's binding) and in
    whatever order among the committed ones, the combined checkpoint covers shard 1 with its newest committed head and
    never with any other."""
    import tempfile
    bus = bus_once()
    aborts = data.draw(st.sets(st.integers(0, len(batches) - 1)))
    pager = data.draw(st.booleans()) if native is not None else False
    with tempfile.TemporaryDirectory() as directory:
        committed_events, aborted_events = shard_one_history(bus, Path(directory) / "one", every, batches, aborts,
                                                             pager)
        committed, chain = heads_of(committed_events), committed_chain(bus, committed_events)
        forks = [h for h in heads_of(aborted_events)
                 if (h["sequence"], h["root_hash"]) not in {(c["sequence"], c["root_hash"]) for c in committed}]
        republished = [tampered(h, chain, committed, data.draw(st.sampled_from(
            ["verbatim", "swapped", "unbound", "transplanted"]))) for h in forks]
        now, tail = [2_000_000_000_000], Tail()
        tail.pending = data.draw(st.permutations(committed + republished))
        ticked = shard_zero(bus, Path(directory), now, tail, chain_at=lambda shard, n: chain.get(n)).tick()
    newest = max(committed, key=lambda h: h["sequence"], default=None)
    leaves = [c.value["shard_heads"][1] for c in ticked]
    expected = [] if newest is None else [{"shard": 1, "tree_size": newest["sequence"],
                                           "root_hash": newest["root_hash"]}]
    assert leaves == expected


def test_a_combined_head_lost_with_an_aborted_transaction_is_signed_again(tmp_path):
    bus = bus_without_broker()
    now, tail = [2_000_000_000_000], Tail()
    audit = shard_zero(bus, tmp_path, now, tail)
    tail.pending = [bound(KEY.sign(shard_log_id(LOG, k), 7, "ab" * 32, 1_000)) for k in range(3)]
    assert len(audit.tick()) == 1
    audit.forget_uncommitted()                    # the transaction that carried it aborted
    now[0] += 60_000
    again = audit.tick()
    assert [e.key for e in again] == [combined_log_id(LOG)]


@pytest.mark.parametrize("malformed", [
    {},
    {"sequence": 3, "hash": "h", "root_hash": "zz", "log_id": LOG + "/shard-1", "signed_at": 1, "key_id": KEY.key_id,
     "signature": "not base64!"},
    {"sequence": -5, "hash": "h", "root_hash": "ab" * 32, "log_id": LOG + "/shard-1", "signed_at": None,
     "key_id": KEY.key_id, "signature": ""},
    {"sequence": 3, "hash": "h", "root_hash": "ab" * 32, "log_id": LOG + "/shards", "signed_at": 1,
     "key_id": KEY.key_id, "signature": "A" * 86 + "=="},
])
def test_a_malformed_checkpoint_neither_crashes_nor_stops_the_combined_tick(tmp_path, malformed):
    """Held: junk on audit.checkpoints is passed over, and a good head after it is still combined."""
    bus = bus_without_broker()
    now, tail = [2_000_000_000_000], Tail()
    audit = shard_zero(bus, tmp_path, now, tail)
    good = KEY.sign(shard_log_id(LOG, 2), 4, "cd" * 32, 1_000)
    tail.pending = [malformed, bound(good)]
    [combined] = audit.tick()
    assert [leaf["tree_size"] for leaf in combined.value["shard_heads"]] == [0, 0, 4]


# --- Shard numbers in names: one spelling each, and none that crashes a reader --------------------------------------

OTHER_DIGITS = ["²", "١", "9" * 5000]          # a superscript (isdigit, int refuses), Arabic-Indic one, >4300 digits


@pytest.mark.parametrize("digits", OTHER_DIGITS)
def test_a_log_id_or_key_name_with_other_digits_names_no_shard_and_raises_nothing(digits):
    assert shard_of_log_id(LOG, f"{LOG}/shard-{digits}") is None
    assert subject_of_key(f"ana\x00shard-{digits}") == (f"ana\x00shard-{digits}", 0)


def poison(digits: str) -> dict:
    """A checkpoint anyone who can write audit.checkpoints can send: no valid signature needed."""
    return {"sequence": 3, "hash": "0" * 64, "checkpoint_at": 1, "log_id": f"{LOG}/shard-{digits}",
            "root_hash": "ab" * 32, "signed_at": 1, "key_id": KEY.key_id, "signature": "A" * 86 + "==",
            "frontier": [], "blocks_from": 0, "blocks": []}


@pytest.mark.parametrize("digits", ["²", "9" * 5000])
def test_a_poison_checkpoint_does_not_stop_a_shard_from_starting(monkeypatch, digits):
    import services.auditor.adapters as adapters
    monkeypatch.setattr(adapters, "checkpoints", lambda bus: [poison(digits)])
    monkeypatch.setattr(adapters, "audit_records", lambda bus, shard=0: [])
    log = adapters.read_log(bus_without_broker(), KEYS, shard_log_id(LOG, 1), shard=1, log=LOG)
    assert log.head.sequence == 0


@pytest.mark.parametrize("digits", ["²", "9" * 5000])
def test_a_poison_checkpoint_does_not_stop_the_combined_tick(tmp_path, digits):
    bus = bus_without_broker()
    now, tail = [2_000_000_000_000], Tail()
    good = KEY.sign(shard_log_id(LOG, 2), 4, "cd" * 32, 1_000)
    tail.pending = [poison(digits), bound(good)]
    [combined] = shard_zero(bus, tmp_path, now, tail).tick()
    assert [leaf["tree_size"] for leaf in combined.value["shard_heads"]] == [0, 0, 4]


def test_only_a_shards_own_spelling_of_a_key_name_is_its_key():
    keys = {key_name("ana", 1): b"1" * 32, "ana\x00shard-١": b"x" * 32}
    assert keys_of_shard(keys, 1) == {"ana": b"1" * 32}
    assert keys_of_shard({"bo\x00shard-²": b"y" * 32, key_name("ana", 1): b"1" * 32}, 1) == {"ana": b"1" * 32}


# --- Readers that cite a record by its sequence alone ------------------------------------------------------------------

def test_a_model_card_of_a_sharded_log_cites_records_by_their_place():
    from services.cli.model_card import markdown, model_card
    from tests.unit.test_model_card import story
    events = [dataclasses.replace(e, shard=2, sharded=True) for e in story()]
    card = model_card(events, "m", 1)
    text = markdown(card)
    assert "#2:4" in text and "[#4]" not in text and "#4." not in text


def test_the_erasure_cited_with_a_record_of_a_sharded_log_names_its_place(tmp_path):
    from services.adapters import decoded
    from services.domain.answers import cited
    from tests.support.handlers import audited
    bus = bus_without_broker()
    events = shard_auditor(bus, tmp_path, 2, False)([request(bus, "ana", 0), erasure(bus, "ana", "lead", 1)])
    records = [{**r, "shard": 2} for r in audited(bus.schemas, events)]
    first = next(iter(decoded(bus, records, keys={})))
    found = cited(first)
    assert first.personal == "erased" and found["audit_place"] == "2:1"
    assert found["erased"].get("audit_place") == "2:2"


def test_a_poison_checkpoint_does_not_make_shard_zero_raise_on_a_batch(tmp_path):
    bus = bus_without_broker()
    now, tail = [2_000_000_000_000], Tail()
    tail.pending = [poison("²")]
    audit = shard_zero(bus, tmp_path, now, tail)
    events = audit([request(bus, "ana", 0)])
    assert len(audited_records(bus, events)) == 1


def audited_records(bus, events) -> list[dict]:
    from tests.support.handlers import audited
    return audited(bus.schemas, events)


# --- Subjects: one data key per entity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pager", PAGERS)
@pytest.mark.parametrize("victim", [b"\xff\xfe", b"a" * 300, b"ana\x00shard-1"])
def test_two_message_keys_never_share_a_data_key(tmp_path, pager, victim):
    """Was a finding: a UTF-8 key spelling 'sha256:<digest>' was the subject of the key it digests (non-UTF-8,
    overlong or NUL-bearing), so two entities shared one data key and erasing either erased both."""
    bus = bus_without_broker()
    spelled = b"sha256:" + hashlib.sha256(victim).hexdigest().encode()
    messages = [request(bus, "x", 0), request(bus, "x", 1)]
    messages[0]._key, messages[1]._key = victim, spelled
    events = shard_auditor(bus, tmp_path, 1, pager)(messages)
    assert len(live_keys(events)) == 2


def test_an_erasure_of_an_id_spelling_a_digest_deletes_only_that_ids_key(tmp_path):
    """The erasure side of it: an admin asked to forget the entity 'sha256:<digest of ana\\0x>' erases that entity's
    key, not the key of the entity the digest names."""
    bus = bus_without_broker()
    victim, hostile = b"ana\x00x", "sha256:" + hashlib.sha256(b"ana\x00x").hexdigest()
    messages = [request(bus, "x", 0), request(bus, "x", 1)]
    messages[0]._key, messages[1]._key = victim, hostile.encode()
    audit = shard_auditor(bus, tmp_path, 0, False)
    events = audit(messages) + audit([erasure(bus, hostile, "lead", 2)])
    assert list(live_keys(events)) == [subject_of(victim)]


message_keys = st.one_of(st.binary(max_size=40), st.text(max_size=30).map(str.encode),
                         st.text(min_size=250, max_size=260).map(str.encode),
                         st.binary(max_size=12).map(lambda k: b"sha256:" + k),
                         st.binary(max_size=20).map(lambda k: b"sha256:" + hashlib.sha256(k).hexdigest().encode()))


def spelled_digests(keys: list[bytes]) -> list[bytes]:
    """The keys and, for each, the key that spells its digest name (the hostile twin the finding used)."""
    return keys + [b"sha256:" + hashlib.sha256(k).hexdigest().encode() for k in keys]


@settings(max_examples=500, derandomize=True)
@given(st.lists(message_keys, min_size=1, max_size=8, unique=True), st.integers(0, 3))
def test_every_message_key_has_one_subject_and_no_two_keys_share_one(keys, shard):
    """The class behind the finding: subject_of is injective (no two distinct keys, however spelled, share a subject,
    so none shares a data key in any shard), and a subject is a name audit.keys can carry (no NUL, bounded)."""
    keys = list(dict.fromkeys(spelled_digests(keys)))
    subjects = [subject_of(k) for k in keys]
    assert len(set(subjects)) == len(keys)
    assert all("\x00" not in s and len(s) <= 256 and subject_of_key(key_name(s, shard)) == (s, shard)
               for s in subjects)


@pytest.mark.skipif(native is None, reason="services/native is not built")
@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(message_keys, min_size=1, max_size=5, unique=True))
def test_the_compiled_pager_names_every_key_as_the_python_path_does(keys):
    """The compiled and the Python path give each message key the same subject, so the same data key names."""
    import tempfile
    bus = bus_without_broker()
    keys = list(dict.fromkeys(spelled_digests(keys)))
    named = []
    for pager in (True, False):
        messages = [request(bus, "x", i) for i in range(len(keys))]
        for message, key in zip(messages, keys):
            message._key = key
        with tempfile.TemporaryDirectory() as anchor:
            named.append(sorted(live_keys(shard_auditor(bus, Path(anchor), 2, pager)(messages))))
    assert named[0] == named[1] == sorted({key_name(subject_of(k), 2) for k in keys})


def test_the_consoles_refresh_survives_a_poison_checkpoint():
    from services.console.serve import unread
    assert unread({f"{LOG}/shard-²": 3, shard_log_id(LOG, 1): 5}, {}, LOG) == {1: 5}


def test_the_console_takes_no_unsigned_checkpoint_for_a_shards_head():
    from services.console.serve import unread
    from services.console.view import ConsoleView
    view = ConsoleView()
    view.apply("mlbus.AuditCheckpoint", {"log_id": shard_log_id(LOG, 1), "sequence": 10**12, "hash": "0" * 64,
                                         "root_hash": "ab" * 32, "signed_at": 1, "key_id": KEY.key_id,
                                         "signature": "A" * 86 + "=="})
    assert 1 not in unread({name: head["sequence"] for name, head in view.heads.items()}, {}, LOG)


# --- audit.log's partition count ---------------------------------------------------------------------------------------

def test_a_copy_given_a_shard_past_the_count_it_read_stops_rather_than_run_it():
    from confluent_kafka import TopicPartition
    from services.auditor.shards import Shards
    from services.bus.logs import get_logger
    started: list[tuple[int, int]] = []

    class Runtime:
        def run(self, handle_signals=False):
            pass

    class Consumer:
        def incremental_assign(self, partitions): pass
        def pause(self, partitions): pass

    copy = Shards.__new__(Shards)
    copy.bus, copy.topic, copy.running, copy.stopped, copy.stopping, copy.shards = None, "t.audit.log", {}, [], False, 3
    copy.log = get_logger(component="auditor")
    copy.make = lambda shard, shards: started.append((shard, shards)) or Runtime()
    with pytest.raises(Exception):
        copy._assigned(Consumer(), [TopicPartition("t.audit.log", 3)])
    assert started == []


# --- auditor_lag ---------------------------------------------------------------------------------------------------------

def lag_with(monkeypatch, sizes: dict[str, int], behind: dict[tuple[int, str, int], int]) -> dict[str, int]:
    """auditor_lag over a broker whose topics have `sizes` partitions (audit.log's: the shards) and where shard k's
    group is `behind[k, topic, partition]` messages short of a partition's end (0 when not given)."""
    import services.adapters.shard_lag as shard_lag
    from services.domain import shard_group
    bus = bus_without_broker()
    physical = {bus.catalogue.physical(t): n for t, n in sizes.items()}
    groups = {shard_group("t.mlbus.auditor", k): k for k in range(sizes["audit.log"])}

    class Listed:
        def __init__(self, n):
            self.partitions = {p: None for p in range(n)}

    class Consumer:
        def __init__(self, config): pass
        def list_topics(self, timeout=None):
            return type("Metadata", (), {"topics": {t: Listed(n) for t, n in physical.items()}})()
        def close(self): pass

    def consumer_lag(bus, group, topics, only=None):
        lag = {t: 0 for t in topics}
        for topic, partition in only if only is not None else []:
            lag[topic] += behind.get((groups[group], topic, partition), 0)
        return lag

    monkeypatch.setattr(shard_lag, "Consumer", Consumer)
    monkeypatch.setattr(shard_lag, "base_config", lambda settings: {})
    monkeypatch.setattr(shard_lag, "consumer_lag", consumer_lag)
    return shard_lag.auditor_lag(bus, [t for t in sizes if t != "audit.log"])


def test_auditor_lag_counts_an_erasure_a_shard_has_not_acted_on(monkeypatch):
    """Was a finding: each partition counted in its owner's group only, so an erasure partition another shard had not
    read yet (its key of the subject still live) counted as no lag: 'drained' did not mean 'erased everywhere'."""
    from services.domain import shard_of
    owner = shard_of("audit.erasures", 0, 3)
    behind = {(k, "audit.erasures", 0): 0 if k == owner else 1 for k in range(3)}   # the owner has audited it
    assert sum(lag_with(monkeypatch, {"audit.log": 3, "audit.erasures": 1, "outcomes": 3}, behind).values()) == 2


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 4), st.data())
def test_the_auditor_reads_as_drained_only_when_every_shard_reading_a_partition_has_passed_its_end(
        shards, erasure_partitions, outcome_partitions, data):
    """The class: auditor_lag is 0 exactly when every shard that reads a partition — its owner, and for an erasure
    topic every shard (each deletes its own key) — has committed to its end; and then nothing was left out."""
    from services.domain import shard_of
    sizes = {"audit.log": shards, "audit.erasures": erasure_partitions, "outcomes": outcome_partitions}
    readers = {(t, p): range(shards) if t == "audit.erasures" else [shard_of(t, p, shards)]
               for t, n in sizes.items() if t != "audit.log" for p in range(n)}
    behind = {(k, t, p): data.draw(st.integers(0, 2)) for (t, p), ks in readers.items() for k in range(shards)}
    with pytest.MonkeyPatch.context() as monkeypatch:
        lag = lag_with(monkeypatch, sizes, behind)
    unread = sum(behind[k, t, p] for (t, p), ks in readers.items() for k in ks)
    assert sum(lag.values()) == unread and (unread == 0) == all(
        behind[k, t, p] == 0 for (t, p), ks in readers.items() for k in ks)


def test_the_witness_refuses_a_poison_checkpoint_and_cosigns_the_rest(tmp_path):
    from services.witness.adapters import WitnessState
    from services.witness.handlers import Witness
    from tests.unit.auditor.test_trust_roots import checkpoint, held, key_in_memory, keys_of
    from tests.unit.auditor.test_witness_shards import Log as WitnessLog, head
    auditor = key_in_memory()
    state, published = WitnessState(tmp_path / "witness"), []
    witness = Witness(state, state.key(), "audit.log", lambda: keys_of(auditor), WitnessLog(), published.append,
                      clock=lambda: 7, shards=3, chain_at=held)
    from types import SimpleNamespace
    forged = SimpleNamespace(value={**checkpoint(head(auditor, 1, 5)).value, "log_id": "audit.log/shard-²"})
    decisions = witness([forged, checkpoint(head(auditor, 2, 9))])
    assert "cosign" in [d.action for d in decisions] and witness.refused >= 1


def test_the_witness_cosigns_no_head_of_a_history_the_log_does_not_hold(tmp_path):
    """A head of an aborted transaction extends the committed prefix it forked from, so it passes for consistent with
    the last head co-signed (its proof made from the republished checkpoint's unsigned block hashes): the witness
    co-signs a head only once it is bound to the chain hash the shard's committed record at its size holds. Else it
    would co-sign the fork, and refuse every committed head after it as a split view."""
    from types import SimpleNamespace
    from services.witness.adapters import WitnessState
    from services.witness.handlers import Witness
    from tests.unit.auditor.test_trust_roots import CHAIN, checkpoint, checkpoint_value, key_in_memory, keys_of
    from tests.unit.auditor.test_witness_shards import Log as WitnessLog, head
    auditor, state, published = key_in_memory(), WitnessState(tmp_path / "witness"), []
    log_holds: dict[int, str] = {}                                  # sequence → the committed record's chain hash
    witness = Witness(state, state.key(), "audit.log", lambda: keys_of(auditor), WitnessLog(), published.append,
                      clock=lambda: 7, shards=3, chain_at=lambda shard, sequence: log_holds.get(sequence, CHAIN))
    assert [d.action for d in witness([checkpoint(head(auditor, 1, 5))])] == ["cosign"]
    log_holds[9] = "11" * 32                                        # the fork's record 9 is not the log's
    [decision] = witness([checkpoint(head(auditor, 1, 9))])
    assert decision.action == "refuse" and "history the log does not hold" in decision.reason
    assert witness.last_of(1).tree_size == 5
    committed = head(auditor, 1, 9)
    value = {**checkpoint_value(committed), "hash": "11" * 32, "chain_signature": auditor.bind(committed, "11" * 32)}
    assert [d.action for d in witness([SimpleNamespace(value=value)])] == ["cosign"]
    assert witness.last_of(1).tree_size == 9


def test_the_console_reads_a_shard_only_up_to_a_head_of_its_committed_log():
    """A head of an aborted transaction, republished larger than the log: the timeline would read the shard up to it
    and then only past it, hiding the records the log gets up to that size. The console takes a shard's head as far
    as it is bound to the chain hash the shard's committed record at its size holds."""
    from services.console.serve import committed_sizes
    committed, fork = KEY.sign(shard_log_id(LOG, 1), 10, "ab" * 32, 1), KEY.sign(shard_log_id(LOG, 2), 90, "cd" * 32, 1)
    heads = {committed.log_id: bound(committed, "11" * 32), fork.log_id: bound(fork, "22" * 32),
             shard_log_id(LOG, 3): {**bound(committed, "11" * 32), "log_id": shard_log_id(LOG, 3)}}
    log_holds = {(1, 10): "11" * 32, (2, 90): "33" * 32}             # shard 2's record 90 is not the fork's
    held: set = set()
    assert committed_sizes(heads, KEYS, LOG, held, lambda shard, n: log_holds.get((shard, n))) == {committed.log_id: 10}
    assert committed_sizes(heads, KEYS, LOG, held, lambda shard, n: None) == {committed.log_id: 10}   # remembered
