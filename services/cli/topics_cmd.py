"""mlbus topics list | apply."""
from __future__ import annotations

import argparse

from services.bus.context import Bus
from services.bus.topics import TopicAdmin, plan_topics, replication_warning

from .output import info, print_json, print_table


def register(commands: argparse._SubParsersAction) -> None:
    topics = commands.add_parser("topics", help="the topic catalogue (topics.yaml)")
    sub = topics.add_subparsers(dest="topics_command", required=True)
    listing = sub.add_parser("list", help="print the catalogue as a table")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--markdown", action="store_true", help="print the README's Markdown table")
    listing.set_defaults(run=list_topics)
    apply = sub.add_parser("apply", help="create missing topics, fix configs, report drift (idempotent)")
    apply.add_argument("--dry-run", action="store_true", help="only say what would change")
    apply.add_argument("--json", action="store_true", help="print the changes as JSON")
    apply.set_defaults(run=apply_topics)


def list_topics(bus: Bus, args: argparse.Namespace) -> int:
    topics = list(bus.catalogue)
    if args.json:
        print_json([{**t.as_dict(), "physical_name": bus.catalogue.physical(t.name)} for t in topics])
        return 0
    if args.markdown:
        print(markdown_table(bus))
        return 0
    print_table(["topic", "schema", "key", "parts", "repl", "producers", "consumers", "purpose"],
                [[t.name, t.schema or "(raw bytes)", t.key, t.partitions, t.replication, ",".join(t.producers),
                  ",".join(t.consumers), t.purpose] for t in topics if t.dead_letter_for is None])
    dlqs = [t.name for t in topics if t.dead_letter_for]
    print(f"\n{len(dlqs)} dead-letter topics: {', '.join(dlqs)}")
    return 0


def apply_topics(bus: Bus, args: argparse.Namespace) -> int:
    admin = TopicAdmin(bus)
    changes = plan_topics(bus.catalogue, admin.existing())
    if not args.dry_run:
        admin.apply(changes)
    if args.json:
        print_json({"applied": not args.dry_run, "changes": [c.__dict__ for c in changes]})
    elif not changes:
        print(f"no changes: all {len(list(bus.catalogue))} topics match topics.yaml")
    else:
        verb = "would" if args.dry_run else "did"
        for change in changes:
            print(f"{change.action:15} {change.topic:32} {change.detail}")
        fixable = sum(c.action != "drift" for c in changes)
        info(f"{verb} apply {fixable} changes; {len(changes) - fixable} drift(s) need a person")
    brokers = len(admin.admin.list_topics(timeout=30).brokers)
    if warning := replication_warning(brokers, min(t.replication for t in bus.catalogue)):
        info(warning)
    return 0


def markdown_table(bus: Bus) -> str:
    """The topics table in the README, generated from topics.yaml (a unit test keeps them equal)."""
    lines = ["| topic | schema | key | partitions | producers | consumers | purpose |",
             "|---|---|---|---|---|---|---|"]
    for t in bus.catalogue.primary():
        lines.append(f"| `{t.name}` | `{t.schema}` | {t.key} | {t.partitions} | {', '.join(t.producers)} | "
                     f"{', '.join(t.consumers) or '—'} | {t.purpose} |")
    return "\n".join(lines)
