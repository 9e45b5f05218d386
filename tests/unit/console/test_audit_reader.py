"""The audit screen on a sharded audit.log: its reader, with fakes for the log, reads the log whole once, then each
shard only past what was read of it when its own signed head moves on, the shards' decisions merged by time; the
page shows each shard's head, a broken shard by shard and sequence, and records by their place."""
from __future__ import annotations

import hashlib
from datetime import timedelta
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus import Bus
from services.console import serve
from services.console.serve import AuditReader, unread
from services.console.view import ConsoleView
from services.domain import EPOCH, Audited, LogKey, shard_of_log_id
from tests.unit.console.test_pages import Explainer, console, logged_in  # noqa: F401

BUS = Bus.from_env({"MLBUS_NAMESPACE": "t."})
LOG = "t.audit.log"
KEY = LogKey(Ed25519PrivateKey.generate())


def chain_hash(shard: int, sequence: int) -> str:
    """The chain hash the fake log's record `sequence` of `shard` holds."""
    return hashlib.sha256(f"{shard}:{sequence}".encode()).hexdigest()


def checkpoint(name: str, size: int, key: LogKey = KEY) -> dict:
    """A checkpoint of this log id and size as the auditor signs one: its head, bound to the chain hash of the
    shard's record at that size."""
    head = key.sign(name, size, "ab" * 32, 1_764_244_800_000)
    chain = chain_hash(shard_of_log_id(LOG, name) or 0, size)
    return {"sequence": size, "hash": chain, "checkpoint_at": 1, "log_id": name, "root_hash": head.root_hash,
            "signed_at": head.timestamp, "key_id": head.key_id, "signature": head.signature,
            "chain_signature": key.bind(head, chain)}


def declared(view: ConsoleView) -> ConsoleView:
    """The view with KEY declared as a log signer (as the identities topic would say)."""
    view.identities.log_signers = lambda: {KEY.key_id: KEY.public}   # type: ignore[method-assign]
    return view


def record(shard: int, sequence: int, at_s: int) -> dict:
    return {"shard": shard, "sequence": sequence, "source_topic": "alerts", "source_timestamp": at_s * 1000,
            "message": f"{shard}:{sequence}"}


def as_audited(bus, records, sharded=False):
    sharded = sharded or any(r["shard"] for r in records)
    return [Audited(r["sequence"], EPOCH + timedelta(seconds=r["source_timestamp"] / 1000), "alerts", "a",
                    "mlbus.Alert", {"severity": "warning", "kind": "drift", "message": r["message"]}, r,
                    shard=r["shard"], sharded=sharded) for r in records]


def reader(monkeypatch, log: list[dict]) -> tuple[AuditReader, list]:
    asked: list = []

    def between(bus, first, last=None, shard=0):
        asked.append((shard, first))
        return [r for r in log if r["shard"] == shard and r["sequence"] >= first]

    def whole(bus, records=None):
        asked.append("whole")
        return list(log)
    monkeypatch.setattr(serve, "records_between", between)
    monkeypatch.setattr(serve, "audit_records", whole)
    monkeypatch.setattr(serve, "decoded", as_audited)
    monkeypatch.setattr(serve, "committed_chain_hash", lambda bus, shard, sequence: next(
        (chain_hash(shard, sequence) for r in log if (r["shard"], r["sequence"]) == (shard, sequence)), None))
    return AuditReader(BUS, SimpleNamespace(view=declared(ConsoleView()))), asked


def signed(audit: AuditReader, name: str, size: int) -> None:
    audit.console.view.apply("mlbus.AuditCheckpoint", checkpoint(name, size))


def test_each_shard_is_read_past_its_own_head_only_and_the_timeline_merges_them_by_time(monkeypatch):
    log = [record(0, 1, 10), record(1, 1, 5), record(0, 2, 30), record(1, 2, 20)]
    audit, asked = reader(monkeypatch, log)
    audit.refresh()
    assert asked == []                                  # no head signed yet: nothing to read
    signed(audit, LOG, 2)
    signed(audit, f"{LOG}/shard-1", 2)
    audit.refresh()
    assert asked == ["whole"] and audit.read_up_to == {0: 2, 1: 2} and audit.read_to == 2
    log += [record(1, 3, 40), record(0, 3, 50)]
    signed(audit, f"{LOG}/shard-1", 3)
    audit.refresh()
    assert asked == ["whole", (1, 3)]                   # shard 1 alone, from its next record
    audit.refresh()
    assert asked == ["whole", (1, 3)]                   # delivered twice: nothing new is read
    assert [event.place for event, _ in audit.timeline()] == ["1:3", "0:2", "1:2", "0:1", "1:1"]


class ShardedExplainer(Explainer):
    """The batch scoring's record in shard 2 of a sharded log."""

    def __call__(self, wanted: str) -> dict | None:
        found = super().__call__(wanted)
        if found is not None:
            found["batch_scoring"] |= {"audit_shard": 2, "audit_place": "2:42"}
        return found


def test_the_audit_page_shows_each_shards_head_the_broken_shard_and_records_by_place(console):  # noqa: F811
    app, _, people = console
    app.explainer = ShardedExplainer()
    declared(app.view)
    for name, size in ((LOG, 30), (f"{LOG}/shard-1", 50), (f"{LOG}/shard-2", 40)):
        app.view.apply("mlbus.AuditCheckpoint", checkpoint(name, size))
    app.verification = {"intact": False, "first_bad_sequence": 41, "first_bad_shard": 2, "reason": "changed",
                        "shards": [{}, {}, {}]}
    client = logged_in(app, people["ana"])
    page = client.get("/audit").text
    assert "Each shard's latest signed head" in page and f"{LOG}/shard-1</code>: tree size <b>50</b>" in page
    assert "BROKEN at shard 2, sequence 41: changed" in page
    assert "[audit #2:42]" in client.get("/audit", params={"request_id": "s-1"}).text


def test_a_checkpoint_is_a_shards_head_only_once_its_signature_holds_under_a_declared_key():
    view = ConsoleView()
    forged = {**checkpoint(f"{LOG}/shard-1", 10**12), "signature": "A" * 86 + "=="}
    view.apply("mlbus.AuditCheckpoint", checkpoint(LOG, 30))
    view.apply("mlbus.AuditCheckpoint", forged)
    view.apply("mlbus.AuditCheckpoint", {"log_id": f"{LOG}/shard-2", "sequence": 10**12, "hash": "0" * 64,
                                         "checkpoint_at": 1})                       # unsigned: never a head
    assert view.heads == {} and view.head is None and len(view.pending) == 2       # the signer is not declared yet
    view.identities = SimpleNamespace(apply=lambda *args: None, log_signers=lambda: {KEY.key_id: KEY.public})
    view.apply("mlbus.IdentityDeclared", {"key_id": KEY.key_id})                   # declared: checked again
    assert view.heads == {LOG: checkpoint(LOG, 30)} and view.pending == []         # the forged one is dropped
    other = LogKey(Ed25519PrivateKey.generate())                                    # a key never declared
    view.apply("mlbus.AuditCheckpoint", checkpoint(f"{LOG}/shard-1", 10**12, other))
    assert unread({name: head["sequence"] for name, head in view.heads.items()}, {}, LOG) == {0: 30}
