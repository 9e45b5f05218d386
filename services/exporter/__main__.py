"""exporter: python -m services.exporter TOPIC... [--to confluent] [--until-caught-up] [--progress S] [--json]
(`mlbus export` runs it; it connects as the `exporter` principal unless MLBUS_PRINCIPAL names another)."""
from __future__ import annotations

import argparse
import json
import sys

from confluent_kafka import KafkaException

from services.bus.catalogue import CatalogueError
from services.bus.context import Bus
from services.bus.errors import InfrastructureError
from services.bus.logs import configure_logging
from services.bus.schema_registry import RegistryRefused, RegistryUnavailable
from services.bus.schema_topic import SchemasTopicResolver
from services.bus.settings import ConfigError

from .bridge import SERVICE, ExportBridge
from .decide import TARGETS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.exporter")
    parser.add_argument("topics", nargs="+")
    parser.add_argument("--to", choices=TARGETS, default=TARGETS[0])
    parser.add_argument("--until-caught-up", action="store_true")
    parser.add_argument("--progress", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        bus = Bus.from_env(principal=SERVICE)
        # records of a writer schema this release no longer ships are placed by what their producer announced
        bus.schemas.resolver = SchemasTopicResolver(bus)
        configure_logging(SERVICE, bus.settings.observability.log_format, "warning", stream=sys.stderr)
        bridge = ExportBridge(bus, args.topics, args.to)
        caught_up = bridge.run(args.until_caught_up, args.progress)
    except (ConfigError, CatalogueError) as error:
        print(f"mlbus export: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RegistryRefused, RegistryUnavailable, KafkaException, InfrastructureError) as error:
        print(f"mlbus export: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"caught_up": caught_up, "topics": {
            topic: {"copy": bus.catalogue.copy_of(topic), "copied": tally.copied,
                    "dead_lettered": tally.dead_lettered} for topic, tally in bridge.tallies.items()}}))
    return EXIT_OK          # caught up (--until-caught-up), or stopped: what was copied is committed


if __name__ == "__main__":
    sys.exit(main())
