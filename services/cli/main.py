"""mlbus — event-driven MLOps on Apache Kafka. `mlbus COMMAND --help` for each command."""
from __future__ import annotations

import argparse
import sys

from confluent_kafka import KafkaException

from services.bus.catalogue import CatalogueError
from services.bus.context import Bus
from services.bus.credentials import ADMIN
from services.bus.errors import BadInput
from services.bus.identity import Identity, identity_file
from services.bus.logs import configure_logging
from services.bus.publish import DeliveryError
from services.bus.schema_topic import SchemasTopicResolver
from services.bus.settings import ConfigError, Settings

from . import (backup_cmd, console_cmd, export_cmd, score_cmd, acl_cmd, audit_cmd, people_cmd, data_cmd, deploy_cmd,
               io_cmd, features_cmd, k8s_cmd, models_cmd, monitor_cmd, registry_cmd, schemas_cmd, supervisor,
               topics_cmd)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mlbus", description=__doc__,
                                   epilog="Environment: MLBUS_IDENTITY (your identity file: who you are and sign as; "
                                          "default ~/.config/mlbus/identity.json, else the broker admin), "
                                          "MLBUS_BOOTSTRAP (use an existing Kafka), MLBUS_NAMESPACE "
                                          "(topic prefix), MLBUS_KAFKA_* (any librdkafka setting).")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (topics_cmd, schemas_cmd, acl_cmd, people_cmd, io_cmd, data_cmd, models_cmd, features_cmd,
                   registry_cmd, deploy_cmd, monitor_cmd, score_cmd, audit_cmd, backup_cmd, export_cmd, supervisor,
                   console_cmd, k8s_cmd):
        module.register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if getattr(args, "offline", False):          # a person's own machine: no broker, no identity needed
            return args.run(None, args)
        settings, args.identity = cli_settings()
        configure_logging("cli", settings.observability.log_format, "warning", stream=sys.stderr)
        return args.run(reading_old_schemas(Bus.from_settings(settings)), args)
    except (ConfigError, CatalogueError) as error:
        print(f"mlbus: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BadInput as error:
        print(f"mlbus: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (DeliveryError, KafkaException) as error:
        print(f"mlbus: Kafka: {error}", file=sys.stderr)
        return EXIT_FAILED


def reading_old_schemas(bus: Bus) -> Bus:
    """Messages written with a schema this release no longer ships (an older version's, before an upgrade) are
    decoded with the writer schema their producer announced on the `schemas` topic, read only when one turns up."""
    bus.schemas.resolver = SchemasTopicResolver(bus)
    return bus


def cli_settings() -> tuple[Settings, Identity | None]:
    """The CLI acts as the person of the identity file (MLBUS_IDENTITY or ~/.config/mlbus/identity.json) over
    their own broker credentials; without one it connects as the broker's admin (the local operator)."""
    settings = Settings.from_env()
    path = identity_file()
    if path is None:
        return settings.as_principal(ADMIN), None
    identity = Identity.load(path)
    if not identity.kafka:
        raise ConfigError(f"{path} holds no broker credentials yet: send {identity.name}.enrolment.json to an admin "
                          f"(`mlbus people add {identity.name} --role ROLE --enrolment FILE`), then "
                          f"`mlbus people credentials NAME.credentials.json`")
    return settings.as_person(identity.principal, identity.kafka), identity


if __name__ == "__main__":
    sys.exit(main())
