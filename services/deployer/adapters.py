"""The deployer's history: inventory and deployments rebuilt from the topics at start."""
from __future__ import annotations

from services.bus import Bus
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.bus.identity import SPEC_SIGNERS, Verify, signed_only
from services.bus.replay import fold_history
from services.domain import SpecMonitoring

HISTORY = ("mlbus.ModelTrained", "mlbus.ModelLifecycle", "mlbus.DeploymentChanged", "mlbus.ModelSpecDefined")


def rebuild(bus: Bus, verify: Verify) -> tuple[Inventory, Deployments, SpecMonitoring]:
    """The deployer's views from history; a spec only when a data scientist signed it."""
    inventory, deployments, specs = Inventory(), Deployments(), SpecMonitoring()
    fold_history(bus, HISTORY, inventory.apply, deployments.apply, signed_only(specs.apply, verify, SPEC_SIGNERS))
    return inventory, deployments, specs
