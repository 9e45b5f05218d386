"""deployer: the control plane of serving — which approved version serves which share of traffic.

Its data plane is the scorer (python -m services.scorer), a separate process so it scales to N
copies while the deployer, whose canary decisions must be made once, runs as one."""

from services.bus import Bus, PerRecord, RuntimeConfig, ServiceRuntime, Ticker
from services.adapters import ArtifactStore
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging

from .adapters import rebuild
from .decide import Gates
from .handlers import Deployer


def main() -> None:
    bus = Bus.from_env(principal="deployer")
    configure_logging("deployer", bus.settings.observability.log_format, bus.settings.observability.log_level)
    verify = act_verifier(bus)
    inventory, deployments, specs = rebuild(bus, verify)
    deployer = Deployer(inventory, deployments, Gates(),
                        canary_interval_s=bus.settings.services.canary_interval_s,
                        verify=verify, artifacts=ArtifactStore.from_settings(bus.settings), specs=specs)
    config = RuntimeConfig(transactional=True, batch_size=500, ticker=Ticker(deployer.tick))
    ServiceRuntime(bus, "deployer", PerRecord(deployer), config).run()


if __name__ == "__main__":
    main()
