"""mlbus schemas register | check — every topic's value schema in a schema registry (scripts/registry starts one)."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from services.adapters import check_all, register_all, registry_admin, RegistryAdmin
from services.bus.context import Bus
from services.bus.schema_registry import RegistryError

from .output import info, print_json, print_table

REGISTRY_HELP = ("the registry's Confluent-compatible API, e.g. https://127.0.0.1:PORT/apis/ccompat/v7 (default "
                 "MLBUS_REGISTRY_URL; credentials and CA from MLBUS_REGISTRY_CONFIG, the properties file "
                 "scripts/registry start prints as registry_config=)")


def register(commands: argparse._SubParsersAction) -> None:
    schemas = commands.add_parser("schemas", help="topic value schemas in a schema registry (Confluent API)")
    sub = schemas.add_subparsers(dest="schemas_command", required=True)
    registering = sub.add_parser("register", help="register every topic's value schema (subject <topic>-value), "
                                                  "BACKWARD compatibility enforced per subject; idempotent")
    checking = sub.add_parser("check", help="say whether every topic's schema may follow what the registry holds "
                                            "(exit 1 if one may not); registers nothing")
    for command, run in ((registering, register_schemas), (checking, check_schemas)):
        command.add_argument("--registry", default="", help=REGISTRY_HELP)
        command.add_argument("--json", action="store_true", help="print JSON instead of a table")
        command.set_defaults(run=with_registry(run))


def with_registry(run: Callable[[Bus, argparse.Namespace, RegistryAdmin], int]) -> Callable[..., int]:
    """A command given the registry the settings (or --registry) name; one that refuses or does not answer: exit 1."""
    def command(bus: Bus, args: argparse.Namespace) -> int:
        try:
            return run(bus, args, registry_admin(bus.settings, bus.catalogue, args.registry))
        except RegistryError as error:
            print(f"mlbus: {error}", file=sys.stderr)
            return 1
    return command


def register_schemas(bus: Bus, args: argparse.Namespace, registry: RegistryAdmin) -> int:
    ids = register_all(registry, bus.catalogue, bus.schemas)
    if args.json:
        print_json({"compatibility": "BACKWARD", "subjects": ids})
        return 0
    print_table(["subject", "id"], sorted(ids.items()))
    info(f"{len(ids)} subjects registered, BACKWARD compatibility enforced on each")
    return 0


def check_schemas(bus: Bus, args: argparse.Namespace, registry: RegistryAdmin) -> int:
    verdicts = check_all(registry, bus.catalogue, bus.schemas)
    refused = {subject for subject, (compatible, _) in verdicts.items() if not compatible}
    if args.json:
        print_json({subject: {"compatible": ok, "reasons": reasons} for subject, (ok, reasons) in verdicts.items()})
    else:
        print_table(["subject", "compatible", "reasons"],
                    [[s, "yes" if ok else "NO", "; ".join(r)] for s, (ok, r) in sorted(verdicts.items())])
        info(f"{len(refused)} of {len(verdicts)} subjects would refuse this release's schema")
    return 1 if refused else 0
