"""mlbus export TOPIC... --to confluent: the export bridge (services/exporter), run in this process's place."""
from __future__ import annotations

import argparse
import os
import sys

from services.bus.context import Bus
from services.bus.settings import PROJECT_ROOT

TARGETS = ("confluent",)


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="mirror topics exactly once into Confluent-framed copies (<topic>.confluent)",
        description="Copy each record of the topics into <topic>.confluent: same partition, key, headers and time; "
                    "value in Confluent's framing (00 + the schema registry's id of its writer schema under the "
                    "copy's subject, BACKWARD) with the same Avro body. Exactly once across crashes (Kafka "
                    "transactions; run one bridge per set of topics). A record the codec cannot place goes to "
                    "<topic>.dlq with the reason. Only topics with `export:` in topics.yaml; runs as the `exporter` "
                    "principal (`mlbus acl apply` makes it) until Ctrl-C, which commits the batch in hand.",
        epilog="Needs MLBUS_REGISTRY_URL and MLBUS_REGISTRY_CONFIG (scripts/registry start prints both). Exit codes: "
               "0 stopped or caught up, 1 Kafka or the registry failed, 2 usage (unknown or unexportable topic, no "
               "registry, missing copy the exporter may not create).")
    export.add_argument("topics", nargs="+", metavar="TOPIC", help="catalogue topics to export (topics.yaml names)")
    export.add_argument("--to", choices=TARGETS, required=True, help="the copies' framing")
    export.add_argument("--until-caught-up", action="store_true",
                        help="stop once every partition reached the end it had at start (for scripts)")
    export.add_argument("--progress", type=float, default=5.0, metavar="S",
                        help="print copied, dead-lettered and lag per topic to stderr every S seconds (default 5)")
    export.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    export.set_defaults(run=export_topics)


def export_topics(bus: Bus, args: argparse.Namespace) -> int:
    """Check the topics here (a clear error before anything starts), then become the exporter process."""
    for topic in args.topics:
        bus.catalogue.copy_of(topic)            # CatalogueError for an unknown or unexportable topic
    argv = [sys.executable, "-m", "services.exporter", *args.topics, "--to", args.to, "--progress", str(args.progress),
            *(["--until-caught-up"] if args.until_caught_up else []), *(["--json"] if args.json else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
                                                       if p)}
    os.execve(sys.executable, argv, env)
    return 0
