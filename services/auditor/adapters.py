"""Where the log left off (read_committed): the chain's last record and the Merkle tree's frontier, resumed
from the latest signed checkpoint and the records committed after it."""
from __future__ import annotations

from services.bus import Bus
from services.bus.errors import InfrastructureError
from services.domain import ChainHead, Frontier, audit_records, checkpoints, data_keys, leaf, records_between

from .decide import Log


def read_log(bus: Bus, timeout_s: float = 30.0) -> Log:
    """The log as committed: from the latest checkpoint that carries a frontier, the records after it (found
    by offset); without one (an empty log, or one written before the Merkle tree), every record from the start."""
    kept = [c for c in checkpoints(bus) if c.get("root_hash")]
    latest = max(kept, key=lambda c: c["sequence"], default=None)
    if latest is None:
        return _grown(Log(), audit_records(bus))
    tree = Frontier(latest["sequence"], [bytes.fromhex(h) for h in latest["frontier"]])
    return _grown(Log.resumed(ChainHead(latest["sequence"], latest["hash"]), tree),
                  records_between(bus, latest["sequence"] + 1, timeout_s=timeout_s))


def _grown(log: Log, records: list[dict]) -> Log:
    for record in records:
        if record["sequence"] != log.head.sequence + 1 or record["prev_hash"] != log.head.hash:
            raise RuntimeError(f"audit.log does not continue its checkpoint at sequence {log.head.sequence}: run "
                               f"`mlbus audit verify` (the auditor will not extend a log it cannot vouch for)")
        log.add(record, leaf(record))
    return log


def read_keys(bus: Bus) -> dict[str, bytes]:
    """Every subject's live data key on audit.keys; the auditor cannot seal without them."""
    keys = data_keys(bus)
    if keys is None:
        raise InfrastructureError("the auditor cannot read audit.keys (its ACL, or the broker)")
    return keys
