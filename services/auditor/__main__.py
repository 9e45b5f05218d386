"""auditor: python -m services.auditor — the only writer of audit.log (one instance: its chain is one line).

MLBUS_AUDIT_CHECKPOINT_EVERY: records between checkpoints on audit.checkpoints (default 1000)."""

from services.bus import Bus, ServiceRuntime
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging

from .adapters import chain_head
from .handlers import Auditor

NOT_AUDITED = ("audit.log", "audit.checkpoints")


def main() -> None:
    bus = Bus.from_env(principal="auditor")
    configure_logging("auditor", bus.settings.log_format, bus.settings.log_level)
    auditor = Auditor(bus, lambda: chain_head(bus), bus.settings.audit_checkpoint_every,
                      act_verifier(bus))
    topics = [name for name in bus.catalogue.topics if name not in NOT_AUDITED]
    # Large batches: each transaction's commit costs a broker round trip or two (~30 ms locally), which at
    # 1,000 records a batch was a third of the auditor's time under a backlog.
    ServiceRuntime(bus, "auditor", lambda message: [], topics=topics, transactional=True, batch_size=5000,
                   raw_batch_handler=auditor, on_stop=auditor.on_stop).run()


if __name__ == "__main__":
    main()
