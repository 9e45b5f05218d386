"""`mlbus backup` and `mlbus restore` on the real broker: records of several topics (headers, tombstones, a
transaction's markers in between) come back byte for byte onto a fresh namespace, a consumer group resumes
at the first record it had not read, files come back identical; a second restore onto topics that now hold
records, and a damaged backup, are refused with nothing written."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from services.bus.kafka import base_config
from services.bus.replay import read_messages
from services.bus.context import Bus
from services.bus.credentials import ADMIN
from services.bus.topics import TopicAdmin
from tests.support.people import Cli, mlbus_cli

TOPICS = ("data.batches", "audit.keys", "inference.requests.dlq")


def records(bus: Bus) -> dict[tuple[str, int], list[tuple]]:
    found: dict[tuple[str, int], list[tuple]] = {}
    for m in read_messages(bus, TOPICS):
        found.setdefault((bus.catalogue.logical(m.topic()), m.partition()), []).append(
            (m.key(), m.value(), m.headers(), m.timestamp()[1]))
    return found


def fill(bus: Bus) -> None:
    """Plain records, a tombstone, and a committed transaction (its marker leaves a gap in the offsets)."""
    config = base_config(bus.settings)
    plain = Producer({**config, "enable.idempotence": True})
    for i in range(20):
        plain.produce(bus.catalogue.physical("data.batches"), key=f"k{i}", value=bytes([i]) * 10, partition=0,
                      headers=[("mlbus.id", f"id-{i}".encode()), ("empty", None)])
    plain.produce(bus.catalogue.physical("audit.keys"), key="subject-1", value=b"key", partition=0)
    plain.produce(bus.catalogue.physical("audit.keys"), key="subject-1", value=None, partition=0)   # forgotten
    plain.produce(bus.catalogue.physical("inference.requests.dlq"), value=b"\xff not avro", partition=0,
                  headers=[("dlq.reason", b"undecodable")])
    plain.flush(30)
    transactional = Producer({**config, "transactional.id": f"{bus.settings.connection.namespace}mlbus.backup-test"})
    transactional.init_transactions(30)
    for batch in range(2):
        transactional.begin_transaction()
        for i in range(5):
            transactional.produce(bus.catalogue.physical("data.batches"), key=f"t{batch}-{i}", value=b"t",
                                  partition=0)
        transactional.commit_transaction(30)
    transactional.flush(30)


def test_a_backup_restores_onto_a_fresh_namespace(bus, bus_env, cli, tmp_path):
    fill(bus)
    physical = bus.catalogue.physical("data.batches")
    group = f"{bus.settings.connection.namespace}mlbus.scorer"
    committer = Consumer({**base_config(bus.settings), "group.id": group})
    marker_gap = 20 + 5 + 1           # 20 plain records, one transaction of 5 and its marker: offset 26 is next
    committer.commit(offsets=[TopicPartition(physical, 0, marker_gap)], asynchronous=False)
    committer.close()
    var = Path(bus_env["MLBUS_VAR"])
    (var / "data" / "breast_cancer").mkdir(parents=True)
    (var / "data" / "breast_cancer" / "b1.parquet").write_bytes(b"PAR1 rows")
    (var / "artifacts" / "m").mkdir(parents=True)
    (var / "artifacts" / "m" / "1.skops").write_bytes(b"model bytes")

    backup = tmp_path / "backup"
    made = cli("backup", str(backup))
    assert made.returncode == 0, made.stderr
    assert "consumer groups" in made.stderr and (backup / "manifest.json").is_file()
    modes = {path.relative_to(backup): path.stat().st_mode & 0o777 for path in [backup, *backup.rglob("*")]}
    assert {m for p, m in modes.items() if (backup / p).is_dir()} == {0o700}, modes      # data keys, the audit key
    assert {m for p, m in modes.items() if (backup / p).is_file()} == {0o600}, modes

    fresh_env = {**bus_env, "MLBUS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}.", "MLBUS_VAR": str(tmp_path / "var2")}
    restored = Cli(fresh_env, prepared=True)("restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    fresh = Bus.from_env(fresh_env, principal=ADMIN)
    assert records(fresh) == records(bus) and sum(map(len, records(fresh).values())) == 33   # times too
    restored_topics = TopicAdmin(fresh).existing()
    assert restored_topics[fresh.catalogue.physical("data.batches")].config["message.timestamp.type"] == \
        "LogAppendTime"                                  # the broker's time again, once the originals are back
    for relative in ("data/breast_cancer/b1.parquet", "artifacts/m/1.skops", "keys/auditor.ed25519"):
        assert (tmp_path / "var2" / relative).read_bytes() == (var / relative).read_bytes(), relative

    resumed = Consumer({**base_config(fresh.settings), "group.id": f"{fresh.settings.connection.namespace}mlbus.scorer",
                        "auto.offset.reset": "earliest", "enable.auto.commit": False})
    resumed.subscribe([fresh.catalogue.physical("data.batches")])
    first = None
    for _ in range(60):
        first = resumed.poll(1.0)
        if first is not None and not first.error():
            break
    resumed.close()
    assert first.key() == b"t1-0"      # the first record the group had not read: the second transaction's first

    again = Cli(fresh_env, prepared=True)("restore", str(backup))
    assert again.returncode == 1 and "hold records already" in again.stderr and "nothing written" in again.stderr
    (backup / "topics" / "data.batches" / "0.avro").write_bytes(b"damaged")
    other = {**bus_env, "MLBUS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}.", "MLBUS_VAR": str(tmp_path / "var3")}
    damaged = Cli(other, prepared=True)("restore", str(backup))
    assert damaged.returncode == 1 and "does not match the manifest's sha256" in damaged.stderr
    assert not (tmp_path / "var3").exists()


def test_a_folder_that_is_not_a_finished_backup_is_refused_with_the_reason(tmp_path):
    env = {**os.environ, "MLBUS_BOOTSTRAP": "127.0.0.1:1", "MLBUS_VAR": str(tmp_path / "var")}   # no broker reached
    for manifest, reason in ((None, "holds no manifest.json"), ("nope", "is not JSON"),
                             ('{"format": "tar"}', "format 'tar'"),
                             ('{"format": "mlbus-backup/1", "files": {"data": 3}}', "is malformed")):
        if manifest is not None:
            (tmp_path / "manifest.json").write_text(manifest)
        refused = mlbus_cli(env, "restore", str(tmp_path))
        assert refused.returncode == 1 and reason in refused.stderr, (manifest, refused.stderr)
    assert not (tmp_path / "var").exists()
