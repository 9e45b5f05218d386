"""lineage: python -m services.lineage (MLBUS_LINEAGE_FILE and/or MLBUS_LINEAGE_URL; docs/how-to/lineage.md)."""
import sys

from services.bus import Bus, ConfigError, PerRecord, RuntimeConfig, ServiceRuntime, Ticker
from services.bus.logs import configure_logging

from .adapters import emitter
from .decide import Places, Scoring
from .handlers import Lineage
from .settings import LineageSettings

CODE_VERSION = "0.1.0"
EXIT_USAGE = 2


def runtime() -> ServiceRuntime:
    """The service wired from its settings; ConfigError when they say too little (no file, no URL)."""
    settings = LineageSettings.from_env()
    bus = Bus.from_env(principal="lineage")
    configure_logging("lineage", bus.settings.observability.log_format, bus.settings.observability.log_level)
    bootstrap = bus.settings.bootstrap.split(",")[0].strip()
    places = Places(jobs=settings.namespace, bus=f"kafka://{bootstrap}",
                    producer=f"urn:mlbus:lineage:{CODE_VERSION}",
                    topics={t.name: bus.catalogue.physical(t.name) for t in bus.catalogue})
    handler = Lineage(places, Scoring(settings.period_s), emitter(settings), settings.grace_s)
    config = RuntimeConfig(batch_size=500, ticker=Ticker(handler.tick, every_s=1.0))
    return ServiceRuntime(bus, "lineage", PerRecord(handler), config)


def main() -> int:
    try:
        service = runtime()
    except ConfigError as error:
        print(f"lineage: {error}", file=sys.stderr)
        return EXIT_USAGE
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
