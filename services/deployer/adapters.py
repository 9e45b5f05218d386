"""The deployer's history: inventory and deployments rebuilt from the topics at start."""
from __future__ import annotations

from services.bus import Bus
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.bus.replay import read_topics

HISTORY = ("mlbus.ModelTrained", "mlbus.ModelLifecycle", "mlbus.DeploymentChanged")


def rebuild(bus: Bus) -> tuple[Inventory, Deployments]:
    records = list(read_topics(bus, [bus.catalogue.for_schema(name).name for name in HISTORY]))
    inventory, deployments = Inventory(), Deployments()
    for name in HISTORY:
        for record in (r for r in records if r.record == name):
            inventory.apply(record.record, record.value)
            deployments.apply(record.record, record.value)
    return inventory, deployments
