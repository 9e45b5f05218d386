"""trainer: trains models from validated batches on request, records everything needed to reproduce them."""

import importlib.util
from dataclasses import replace

from services.bus import Bus, PerRecord, RuntimeConfig, ServiceRuntime
from services.adapters import OfflineStore, SnapshotStore, view_from_record
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging
from services.bus.projections.follow import Follower
from services.bus.service_keys import enrolled_signer
from services.bus.settings import ConfigError

from .adapters import code_version, environment, rebuild_view, training_frames
from .decide import Provenance
from .grid import DaskCluster
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
                      max_artifact_bytes=bus.settings.storage.max_artifact_bytes,
                      cluster=dask_cluster(bus.settings.services.dask_scheduler),
                      offline=OfflineStore(bus.settings.storage.features_offline))
    # feature views are reference data: read whole at start, then followed (a training uses the newest it knows)
    Follower(bus, "trainer-views", ("mlbus.FeatureViewDefined",),
             [trainer.view.feature_views.follow(verify, view_from_record)]).start()
    config = RuntimeConfig(transactional=True, batch_size=50)
    ServiceRuntime(bus, "trainer", PerRecord(trainer, offload=True), config).run()


def dask_cluster(scheduler: str) -> DaskCluster | None:
    """The cluster MLBUS_DASK_SCHEDULER names (connected at the first grid sent there), or None."""
    if not scheduler:
        return None
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError("MLBUS_DASK_SCHEDULER is set, but dask.distributed is not installed: "
                          "pip install 'mlbus[dask]'")
    return DaskCluster(scheduler)


if __name__ == "__main__":
    main()
