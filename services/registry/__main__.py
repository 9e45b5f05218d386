"""registry: the model inventory and its governed lifecycle — registration, policy, approvals, aliases."""
from services.bus import Bus, ServiceRuntime
from services.bus.logs import configure_logging

from .adapters import RegistryDatabase, rebuild_inventory
from .handlers import Registry


def main() -> None:
    bus = Bus.from_env()
    configure_logging("registry", bus.settings.log_format, bus.settings.log_level)
    inventory = rebuild_inventory(bus)
    database = RegistryDatabase(bus.settings.database_url)
    database.replace_all(inventory)
    ServiceRuntime(bus, "registry", Registry(inventory, database), transactional=True, batch_size=100).run()


if __name__ == "__main__":
    main()
