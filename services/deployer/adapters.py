"""The deployer's history: inventory and deployments rebuilt from the topics at start."""
from __future__ import annotations

from services.bus import Bus
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.bus.identity import SPEC_SIGNERS, TRAINED_SIGNER, Verify, signed_only
from services.bus.replay import fold_history
from services.domain import SpecMonitoring

HISTORY = ("mlbus.ModelTrained", "mlbus.ModelLifecycle", "mlbus.DeploymentChanged", "mlbus.ModelSpecDefined")


def rebuild(bus: Bus, verify: Verify) -> tuple[Inventory, Deployments, SpecMonitoring]:
    """The deployer's views from history; a spec only when a data scientist signed it, a version only when the
    trainer did."""
    inventory, deployments, specs = Inventory(), Deployments(), SpecMonitoring()
    fold_history(bus, HISTORY, signed_only(inventory.apply, verify, TRAINED_SIGNER), deployments.apply,
                 signed_only(specs.apply, verify, SPEC_SIGNERS))
    return inventory, deployments, specs
