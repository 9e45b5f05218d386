"""validator: every data batch checked against its dataset's contract before any model may use it."""
from services.bus import Bus, PerRecord, RuntimeConfig, ServiceRuntime
from services.adapters import SnapshotStore
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging

from .adapters import ContractFiles, validated_batch_ids
from .handlers import Validator


def main() -> None:
    bus = Bus.from_env(principal="validator")
    configure_logging("validator", bus.settings.observability.log_format, bus.settings.observability.log_level)
    contracts = ContractFiles(bus.settings.storage.contracts_dir)
    handler = Validator(contracts, SnapshotStore.from_settings(bus.settings).load, validated_batch_ids(bus),
                        act_verifier(bus))
    ServiceRuntime(bus, "validator", PerRecord(handler), RuntimeConfig(transactional=True, batch_size=20)).run()


if __name__ == "__main__":
    main()
