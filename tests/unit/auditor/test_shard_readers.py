"""Readers of a sharded audit.log, pure: which shard a kept head is of, a shard's verdict and the whole log's, what
`audit verify` prints (a v1 log as it always did), a record's place (`k:sequence` only where the log has shards),
which shards the console has not read up to their heads, and a sealed record opened with its own shard's key."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.adapters import decoded
from services.adapters.audit_log import checkpoint_shard
from services.adapters.log_checks import _place_of, head_shard, shard_report, whole_log
from services.bus.errors import BadInput
from services.cli.audit_cmd import place_of, verdict_lines
from services.console.serve import unread
from services.console.view import ConsoleView
from services.domain import Audited, Broken, ChainHead, Head, LogKey, ShardAt, Verified, cited, key_name
from tests.unit.auditor.test_erasure import auditor, bus_without_broker, erasure, records_of, request
from tests.unit.console.test_audit_reader import checkpoint, declared

LOG = "t.audit.log"
KEY = LogKey(Ed25519PrivateKey.generate())


def signed(name: str, size: int = 3, root: str = "ab" * 32) -> Head:
    return Head("audit.checkpoints", size, signed=KEY.sign(name, size, root, 1))


def test_a_head_is_of_the_shard_its_log_id_names_and_any_other_is_shard_0s_to_report():
    assert [head_shard(signed(name), LOG, 3) for name in (LOG, f"{LOG}/shard-1", f"{LOG}/shard-2")] == [0, 1, 2]
    assert head_shard(Head("old checkpoint", 5, "h"), LOG, 3) == 0              # before the Merkle log
    assert head_shard(signed("another.log"), LOG, 3) == 0                        # its walk names the wrong log
    assert head_shard(signed(f"{LOG}/shard-7"), LOG, 3) == 0                     # no such shard here
    assert head_shard(signed(f"{LOG}/shard-1"), LOG, 1) == 0                     # nor in a v1 log
    assert head_shard(signed(f"{LOG}/shards"), LOG, 3) is None                   # every shard's heads: no shard's


def test_a_checkpoint_is_of_the_shard_its_log_id_names_and_one_without_is_a_v1_logs():
    assert checkpoint_shard({"log_id": f"{LOG}/shard-2"}, LOG) == 2
    assert checkpoint_shard({"log_id": None}, LOG) == checkpoint_shard({}, LOG) == checkpoint_shard(
        {"log_id": LOG}, LOG) == 0
    assert checkpoint_shard({"log_id": f"{LOG}/shards"}, LOG) is None


def walked(size: int, broken: Broken | None = None) -> Verified:
    return Verified(ChainHead(size, f"hash{size}"), f"root{size}", 2, broken)


def report(shard: int, size: int, broken: Broken | None = None, trust=None) -> dict:
    heads = [signed(f"{LOG}/shard-{shard}" if shard else LOG, size)]
    return shard_report(shard, f"{LOG}/shard-{shard}" if shard else LOG, heads, [], heads, walked(size, broken),
                        {KEY.key_id: KEY.public}, lambda *args: trust)


def test_a_broken_shard_is_not_asked_about_its_roots_of_trust():
    def never(*args):
        raise AssertionError("trust asked of a broken shard")
    heads = [signed(LOG, 40)]
    found = shard_report(0, LOG, heads, [], heads, walked(40, Broken(41, "hash mismatch", "anchor x:3")),
                         {KEY.key_id: KEY.public}, never)
    assert found["first_bad_sequence"] == 41 and found["records"] is None and found["caught_by"] == "anchor x:3"
    assert found["verified_up_to"] == 40 and not found["intact"]


def test_a_v1_log_reports_as_it_always_did_with_its_one_shard_listed():
    whole = whole_log([report(0, 120)], LOG, "var/anchor", "declared")
    assert {k: whole[k] for k in ("intact", "records", "verified_up_to", "head_hash", "root_hash", "checkpoints",
                                  "anchored_heads", "heads_checked", "first_bad_sequence", "reason")} == {
        "intact": True, "records": 120, "verified_up_to": 120, "head_hash": "hash120", "root_hash": "root120",
        "checkpoints": 1, "anchored_heads": 0, "heads_checked": 2, "first_bad_sequence": None, "reason": None}
    assert verdict_lines(whole) == ["intact: 120 records, root root120, 2 heads checked (1 on audit.checkpoints, "
                                    "0 in the anchor)"]


def test_a_sharded_log_sums_its_shards_and_has_no_one_head():
    whole = whole_log([report(0, 10), report(1, 20), report(2, 30)], LOG, "a", "declared")
    assert whole["intact"] and whole["records"] == whole["verified_up_to"] == 60
    assert whole["head_hash"] is None and whole["root_hash"] is None and whole["heads_checked"] == 6
    assert [(s["shard"], s["records"], s["root"]) for s in whole["shards"]] == [(0, 10, "root10"), (1, 20, "root20"),
                                                                                (2, 30, "root30")]
    lines = verdict_lines(whole)
    assert lines[0] == "intact: 60 records in 3 shards, 6 heads checked (3 on audit.checkpoints, 0 in the anchor)"
    assert lines[3].startswith(f"  shard 2 ({LOG}/shard-2): intact, 30 records verified, root root30")


def test_the_report_names_the_shard_and_sequence_where_a_shard_breaks():
    whole = whole_log([report(0, 10), report(1, 20, trust=("no witness", "audit.witness")),
                       report(2, 40, Broken(41, "prev_hash is not the previous record's hash"))], LOG, "a", "pinned")
    assert not whole["intact"] and whole["records"] is None and whole["verified_up_to"] == 70
    assert (whole["first_bad_shard"], whole["first_bad_sequence"]) == (2, 41)      # broken before untrusted
    assert verdict_lines(whole)[0] == ("BROKEN at shard 2, sequence 41: prev_hash is not the previous record's "
                                       "hash (verified up to 40)")


def test_an_untrusted_shard_is_named():
    whole = whole_log([report(0, 10), report(1, 20, trust=("not co-signed", "audit.witness"))], LOG, "a", "declared")
    assert not whole["intact"] and whole["first_bad_sequence"] is None and whole["first_bad_shard"] == 1
    assert verdict_lines(whole)[0] == ("UNTRUSTED: shard 1: not co-signed [audit.witness] (the 30 records match "
                                       "every head kept)")
    assert verdict_lines(whole)[2].startswith(f"  shard 1 ({LOG}/shard-1): UNTRUSTED")


def test_a_place_is_shard_and_sequence_where_the_log_has_shards_and_a_bare_one_is_shard_0s():
    assert _place_of(None, "2:41") == ShardAt(2, 41) and _place_of(None, "41") == ShardAt(0, 41)
    with pytest.raises(BadInput):
        _place_of(None, "0")
    with pytest.raises(BadInput):
        _place_of(None, "2:")


def event(shard: int, sequence: int, sharded: bool) -> Audited:
    return Audited(sequence, datetime(2026, 12, 6, tzinfo=timezone.utc), "t", "a", "mlbus.Alert", {"kind": "x"}, {},
                   shard=shard, sharded=sharded)


def test_a_record_is_cited_by_its_place_in_a_sharded_log_and_as_before_in_a_v1_log():
    assert event(0, 7, False).place == "7" and event(2, 7, True).place == "2:7" and event(0, 7, True).place == "0:7"
    assert cited(event(0, 7, False)) == {"audit_sequence": 7, "at": event(0, 7, False).at, "kind": "x"}
    found = cited(event(2, 7, True))
    assert (found["audit_sequence"], found["audit_shard"], found["audit_place"]) == (7, 2, "2:7")
    assert place_of(found) == "2:7" and place_of(cited(event(0, 7, False))) == "7"


def test_the_console_reads_each_shard_past_its_own_head_only():
    assert unread({LOG: 10, f"{LOG}/shard-2": 5, f"{LOG}/shards": 3, "other": 9}, {0: 10, 2: 1}, LOG) == {2: 5}
    assert unread({"": 4}, {}, LOG) == {0: 4}                    # a checkpoint without a log id: a v1 log's
    assert unread({LOG: 4}, {0: 4}, LOG) == {}


def test_the_consoles_head_is_the_logs_own_and_each_shard_keeps_its_newest():
    view = declared(ConsoleView())
    for name, size in ((f"{LOG}/shard-1", 50), (LOG, 30), (f"{LOG}/shard-1", 40), (LOG, 35)):
        view.apply("mlbus.AuditCheckpoint", checkpoint(name, size))
    assert view.head["sequence"] == 35 and view.heads[f"{LOG}/shard-1"]["sequence"] == 50
    assert view.signed_sizes() == 85


def test_a_sealed_record_opens_with_the_key_of_the_shard_that_sealed_it(tmp_path):
    bus = bus_without_broker()
    audit = auditor(bus, tmp_path)
    [record] = records_of(audit([request(bus, "e1", 0)]))
    key = dict(audit.keys)["e1"]
    in_shard_1 = {**record, "shard": 1}
    [opened] = decoded(bus, [in_shard_1], keys={key_name("e1", 1): key})
    assert opened.personal == "readable" and opened.value["categories"] == {"city": "Lyon"}
    assert opened.place == "1:1"
    [sealed] = decoded(bus, [in_shard_1], keys={"e1": key})              # shard 0's key of e1 does not open it
    assert sealed.personal == "sealed"
    [v1] = decoded(bus, [record], keys={"e1": key})                       # a v1 record: shard 0's key
    assert v1.personal == "readable" and v1.place == "1"


def test_a_long_entity_ids_erasure_is_found_by_the_name_its_data_was_sealed_under(tmp_path):
    bus = bus_without_broker()
    long_id = "e" * 300                 # sealed under its digest's name (subject_of), erased by the id itself
    audit = auditor(bus, tmp_path)
    records = records_of(audit([request(bus, long_id, 0), erasure(bus, long_id, "lead", 1)]))
    [sealed, erased] = decoded(bus, records, keys={})
    assert sealed.entry["sealed"]["subject"].startswith("sha256:")
    assert sealed.personal == "erased" and sealed.erasure.subject == long_id and erased.erasure is None
    assert cited(sealed)["erased"]["audit_sequence"] == 2 and "audit_place" not in cited(sealed)["erased"]   # v1
