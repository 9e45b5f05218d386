"""The witness of a sharded audit.log on the real broker: the auditor runs three shards, the witness follows
audit.checkpoints and co-signs every shard's newest head under that shard's own log id, each checked against the
shard's own records, and the newest combined head of all shard heads where the auditor makes them — and refuses
nothing."""
from __future__ import annotations

from services.adapters import checkpoints, cosignatures, log_id
from services.domain import TreeHead, combined_log_id, head_of_checkpoint, shard_log_id
from tests.integration.test_audit_shards import SHARDS, all_audited, sharded  # noqa: F401
from tests.integration.test_auditor import publish_events
from tests.support.polling import wait_until
from tests.support.processes import running
from tests.support.witness import witnessing


def newest_heads(bus) -> dict[str, TreeHead]:
    """Each log id's newest signed head on audit.checkpoints: a shard's largest, the combined heads' last (all of
    size P)."""
    newest: dict[str, TreeHead] = {}
    for checkpoint in checkpoints(bus):
        signed = head_of_checkpoint(checkpoint, "audit.checkpoints").signed
        if signed is not None and signed.tree_size >= getattr(newest.get(signed.log_id), "tree_size", 0):
            newest[signed.log_id] = signed
    return newest


def uncosigned(bus) -> list[str]:
    """The log ids whose newest signed head no co-signature covers."""
    found = cosignatures(bus)
    return sorted(name for name, head in newest_heads(bus).items() if not any(c.covers(head) for c in found))


def test_the_witness_cosigns_every_shards_newest_head(sharded, bus_env, tmp_path):  # noqa: F811
    bus = sharded
    witness_log = tmp_path / "witness.log"
    publish_events(bus, 3_000, "w")
    with witnessing(bus, bus_env, witness_log) as witness:
        with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="400") \
                as auditor:
            all_audited(bus, auditor)
        # The auditor has stopped: each shard signed a head of where it stands, the newest the witness must reach.
        wait_until(lambda: witness.poll() is None and not uncosigned(bus), timeout=180, interval=1.0,
                   message=f"every shard's newest head co-signed (still not: {uncosigned(bus)})")
    names = [shard_log_id(log_id(bus), shard) for shard in range(SHARDS)]
    newest = newest_heads(bus)
    # Every shard signed heads, and only shards did — and the auditor's combined heads, where it makes them.
    assert set(names) <= set(newest) <= {*names, combined_log_id(log_id(bus))}
    by_log: dict[str, list[int]] = {}
    for cosignature in cosignatures(bus):
        by_log.setdefault(cosignature.log_id, []).append(cosignature.tree_size)
    assert set(by_log) == set(newest) and all(max(by_log[n]) == newest[n].tree_size for n in names)
    text = witness_log.read_text()
    assert "REFUSED" not in text, text
    state = bus.settings.audit.witness_dir
    assert TreeHead.from_json(_json(state / "last.json")) == newest[names[0]]
    assert all(TreeHead.from_json(_json(state / f"last.shard-{k}.json")) == newest[names[k]] for k in (1, 2))
    print(f"3 shards, newest heads of sizes {[newest[n].tree_size for n in names]}: each co-signed "
          f"({sum(map(len, by_log.values()))} co-signatures, {len(by_log.get(combined_log_id(log_id(bus)), []))} "
          f"of combined heads), none refused")


def _json(path) -> dict:
    from services.bus.edge import content
    return content(path.read_text())
