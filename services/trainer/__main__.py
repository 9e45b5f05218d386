"""trainer: trains models from validated batches on request, records everything needed to reproduce them."""

from dataclasses import replace

from services.bus import Bus, PerRecord, RuntimeConfig, ServiceRuntime
from services.adapters import SnapshotStore
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging
from services.bus.service_keys import enrolled_signer

from .adapters import code_version, environment, rebuild_view, training_frames
from .decide import Provenance
from .handlers import Trainer


def main() -> None:
    bus = Bus.from_env(principal="trainer")
    configure_logging("trainer", bus.settings.observability.log_format, bus.settings.observability.log_level)
    bus = replace(bus, signer=enrolled_signer(bus, "trainer"))     # its own training requests are signed
    provenance = Provenance(*code_version(), environment())
    verify = act_verifier(bus)
    trainer = Trainer(rebuild_view(bus, verify), bus.settings.storage.artifacts_store, provenance, verify,
                      training_frames(SnapshotStore.from_settings(bus.settings)),
                      min_fit_s=bus.settings.services.trainer_min_fit_s,
                      max_artifact_bytes=bus.settings.storage.max_artifact_bytes)
    config = RuntimeConfig(transactional=True, batch_size=50)
    ServiceRuntime(bus, "trainer", PerRecord(trainer, offload=True), config).run()


if __name__ == "__main__":
    main()
