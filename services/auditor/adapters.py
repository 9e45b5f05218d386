"""Where the log left off (read_committed): the chain's last record and the Merkle tree's frontier, resumed
from the latest checkpoint this auditor verifies and the records committed after it."""
from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.bus import BadInput, Bus
from services.bus.kafka import base_config, group_id
from services.bus.errors import InfrastructureError
from services.bus.logs import get_logger
from services.domain import ChainHead, combined_log_id, Frontier, head_of_checkpoint, leaf, shard_of_log_id
from services.adapters import audit_records, checkpoints, data_keys, records_between

from .decide import Log, resume_points


def read_log(bus: Bus, keys: dict[str, bytes], log_id: str, timeout_s: float = 30.0, shard: int = 0,
             log: str | None = None) -> Log:
    """The log as committed: from the latest checkpoint that holds (its head signed by this auditor's key, its
    frontier hashing to the root signed, its chain hash the log's at its sequence), the records after it (found by
    offset); without one (an empty log, one written before the Merkle tree, or every checkpoint refused), every
    record from the start, checked against each head this auditor signed. A forged checkpoint is refused loudly
    and never built on; a log that does not match a head this auditor signed stops it."""
    # A sibling shard's checkpoints are its own to resume from, the combined ones no shard's (`log`: the whole log's
    # name); any other is refused, loudly.
    mine = [c for c in checkpoints(bus) if log is None or (
        shard_of_log_id(log, c.get("log_id") or "") in (None, shard) and c.get("log_id") != combined_log_id(log))]
    verified, refused = resume_points(mine, keys, log_id)
    logger = get_logger(component="auditor")
    for checkpoint, problem in refused:
        logger.error("checkpoint REFUSED: the auditor will not resume from it", sequence=checkpoint.get("sequence"),
                     reason=problem)
    if verified:
        latest = verified[0]
        records = records_between(bus, latest["sequence"], timeout_s=timeout_s, shard=shard)
        if records and records[0]["sequence"] == latest["sequence"] and records[0]["hash"] == latest["hash"]:
            tree = Frontier(latest["sequence"], [bytes.fromhex(h) for h in latest["frontier"]])
            signed = head_of_checkpoint(latest, "audit.checkpoints").signed
            return _grown(Log.resumed(ChainHead(latest["sequence"], latest["hash"]), tree, signed), records[1:])
        logger.error("checkpoint REFUSED: its chain hash is not the log's at its sequence; the log is read from "
                     "its start", sequence=latest["sequence"])
    grown = _grown(Log(), audit_records(bus, shard=shard), {c["sequence"]: c["root_hash"] for c in verified})
    grown.resumed_from = head_of_checkpoint(verified[0], "audit.checkpoints").signed if verified else None
    return grown


def _grown(log: Log, records: list[dict], signed_roots: dict[int, str] | None = None) -> Log:
    for record in records:
        if record["sequence"] != log.head.sequence + 1 or record["prev_hash"] != log.head.hash:
            raise RuntimeError(f"audit.log does not continue its checkpoint at sequence {log.head.sequence}: run "
                               f"`mlbus audit verify` (the auditor will not extend a log it cannot vouch for)")
        log.add(record, leaf(record))
        root = (signed_roots or {}).get(log.head.sequence)
        if root is not None and log.tree.root().hex() != root:
            raise RuntimeError(f"audit.log's first {log.head.sequence} records are not the ones this auditor signed "
                               f"(root {root[:16]}…): the log was rewritten beneath its own head; the auditor will "
                               f"not extend it (run `mlbus audit verify`)")
    return log


def read_keys(bus: Bus) -> dict[str, bytes]:
    """Every subject's live data key on audit.keys; the auditor cannot seal without them."""
    keys = data_keys(bus)
    if keys is None:
        raise InfrastructureError("the auditor cannot read audit.keys (its ACL, or the broker)")
    return keys


class CheckpointTail:
    """audit.checkpoints as committed, read from its start and then followed a poll at a time: the heads the
    shards have committed, for the combined checkpoint (a head still in an open transaction is never seen)."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.consumer: Consumer | None = None

    def new(self) -> list[dict]:
        """The checkpoints committed since the last call (the first: every one)."""
        if self.consumer is None:
            self.consumer = Consumer({**base_config(self.bus.settings), "enable.auto.commit": False,
                                      "group.id": group_id(self.bus.settings, "heads"),
                                      "isolation.level": "read_committed", "fetch.wait.max.ms": 10})
            topic = self.bus.catalogue.physical("audit.checkpoints")
            self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        found = []
        while messages := self.consumer.consume(1000, 0.05):
            for message in messages:
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(message.error())
                try:
                    found.append(self.bus.schemas.decode(message.value(), "mlbus.AuditCheckpoint")[1])
                except BadInput:
                    continue            # not a checkpoint: verify reports it; it covers nothing here
        return found

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
