"""auditor: python -m services.auditor — the only writer of audit.log (one instance: its chain is one line).

MLBUS_AUDIT_CHECKPOINT_EVERY: records between signed tree heads (default 1000); MLBUS_AUDIT_HEAD_INTERVAL_S:
a head at least this often while records come (default 30); MLBUS_AUDIT_ANCHOR: where heads are kept outside
Kafka (default var/audit-anchor/); MLBUS_AUDIT_KEY: the signing key `mlbus acl apply` made."""

from services.bus import Bus, RawBatch, RuntimeConfig, ServiceRuntime, Ticker
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging
from services.bus.settings import ConfigError
from services.domain import LogKey
from services.adapters import Anchor, audited_topics, log_id

from .adapters import read_keys, read_log
from .handlers import AuditMetrics, Auditor


def main() -> None:
    bus = Bus.from_env(principal="auditor")
    configure_logging("auditor", bus.settings.observability.log_format, bus.settings.observability.log_level)
    if not bus.settings.audit.key.exists():
        raise ConfigError(f"no audit signing key at {bus.settings.audit.key} (MLBUS_AUDIT_KEY): `mlbus acl apply` "
                          f"(as the broker admin) makes it and declares its public key on the identities topic")
    key, log_name = LogKey.load(bus.settings.audit.key), log_id(bus)
    # It resumes only from a checkpoint signed with its own key: one that another key signed (even one the admin
    # declared a log-signer) is refused, so nobody who can write audit.checkpoints can choose where it resumes.
    own = {key.key_id: key.public}
    auditor = Auditor(bus, lambda: read_log(bus, own, log_name),
                      lambda size, root, at: key.sign(log_name, size, root, at), Anchor(bus.settings.audit.anchor),
                      act_verifier(bus), lambda: read_keys(bus))
    topics = audited_topics(bus)
    # Large batches: each transaction's commit costs a broker round trip or two (~30 ms locally), which at
    # 1,000 records a batch was a third of the auditor's time under a backlog.
    config = RuntimeConfig(topics=topics, transactional=True, batch_size=5000, ticker=Ticker(auditor.tick),
                           on_stop=auditor.on_stop, on_committed=auditor.on_committed,
                           on_aborted=auditor.forget_uncommitted,
                           outputs=("mlbus.AuditPage", "mlbus.AuditCheckpoint", "mlbus.DataKey"))
    runtime = ServiceRuntime(bus, "auditor", RawBatch(auditor), config)
    auditor.metrics = AuditMetrics(runtime.metrics.registry)
    runtime.run()


if __name__ == "__main__":
    main()
