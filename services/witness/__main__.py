"""witness: python -m services.witness (or `mlbus audit witness`) — co-signs the auditor's tree heads, as the
principal `witness`, with its own key in its own state directory (MLBUS_WITNESS_DIR, default var/witness/)."""
from __future__ import annotations

import signal

from services.bus import Bus, Publisher
from services.bus.identity import read_identities
from services.bus.logs import configure_logging, get_logger
from services.adapters import committed_chain_hash, log_id, shard_count
from services.domain import shard_of_log_id

from .adapters import WitnessState, evidence, follow_checkpoints
from .handlers import Witness


def main() -> None:
    bus = Bus.from_env(principal="witness")
    configure_logging("witness", bus.settings.observability.log_format, bus.settings.observability.log_level)
    state = WitnessState(bus.settings.audit.witness_dir)
    key = state.key()
    get_logger(component="witness").info("witness key", key_id=key.key_id, state=str(state.directory))
    publisher = Publisher(bus, "witness")

    def publish(event) -> None:
        publisher.publish(event)
        publisher.flush()

    log = log_id(bus)
    witness = Witness(state, key, log, lambda: read_identities(bus).log_signers(),
                      lambda kept, last, head, whole: evidence(bus, kept, last, head, whole,
                                                               shard_of_log_id(log, head.log_id) or 0), publish,
                      shards=shard_count(bus),
                      chain_at=lambda shard, sequence: committed_chain_hash(bus, shard, sequence))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    for checkpoints in follow_checkpoints(bus, lambda: bool(stopping)):
        witness(checkpoints)


if __name__ == "__main__":
    main()
