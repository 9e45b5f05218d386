"""registry: the model inventory and its governed lifecycle — registration, policy, approvals, aliases."""
import sys

from services.bus import Bus, PerRecord, RuntimeConfig, ServiceRuntime
from services.bus.identity import act_verifier, read_identities
from services.bus.logs import configure_logging

from .adapters import RegistryDatabase, inventory_from_audit, rebuild_inventory
from .handlers import Registry


def main() -> None:
    bus = Bus.from_env(principal="registry")
    configure_logging("registry", bus.settings.observability.log_format, bus.settings.observability.log_level)
    if "--rebuild-from-audit" in sys.argv[1:]:
        return rebuild_from_audit(bus)
    verify = act_verifier(bus)
    inventory = rebuild_inventory(bus, verify)
    database = RegistryDatabase(bus.settings.storage.database_url)
    database.replace_all(inventory)
    registry = Registry(inventory, database, verify, identities=read_identities(bus))
    ServiceRuntime(bus, "registry", PerRecord(registry), RuntimeConfig(transactional=True, batch_size=100)).run()



def rebuild_from_audit(bus: Bus) -> None:
    """Drop the database's tables and write them again from audit.log alone (`mlbus audit rebuild-registry`)."""
    inventory = inventory_from_audit(bus)
    RegistryDatabase(bus.settings.storage.database_url).replace_all(inventory)
    print(f"registry database rebuilt from audit.log: {len(inventory.versions)} versions, "
          f"{sum(len(v.history) for v in inventory.versions.values())} decisions, {len(inventory.policies)} policies "
          f"({bus.settings.storage.database_url.split('://')[0]})")


if __name__ == "__main__":
    main()
