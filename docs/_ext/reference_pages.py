"""The reference pages, generated from the code at every build: the topic catalogue (topics.yaml), every record
type (schemas/), the CLI (its argparse parsers), the settings (`Settings`) and the Prometheus metrics (every
metric the services construct). Each page is Markdown (MyST); `entries` says what a page covers, so a test can
compare it with the code."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cell(text) -> str:
    """Text safe inside a Markdown table cell: no pipes, and outside `code` no raw HTML and no stray emphasis."""
    parts = " ".join(str(text).split()).split("`")
    for i, part in enumerate(parts):
        if i % 2 == 0:
            part = part.replace("\\", "\\\\").replace("<", "\\<").replace("*", "\\*").replace("_", "\\_")
        parts[i] = part.replace("|", "\\|")
    return "`".join(parts)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) if value != "" else " " for value in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- topics ----------------------------------------------------------------------------------------------------

def catalogue():
    from services.bus.catalogue import load_catalogue
    return load_catalogue(ROOT / "topics.yaml")


def topics_page() -> tuple[str, list[str]]:
    """Every primary topic with its configs, then the dead-letter topics the catalogue derives."""
    from services.bus.context import Bus
    from services.bus.settings import Settings
    from services.cli.topics_cmd import markdown_table
    topics = catalogue().primary()
    out = [markdown_table(Bus.from_settings(Settings.from_env({}))), ""]
    for topic in topics:
        out += [f"({anchor('topic', topic.name)})=", f"## `{topic.name}`", "", cell(topic.purpose), "",
                table(["property", "value"], [
                    ["schema", f"{topic.schema}"], ["key", topic.key], ["partitions", topic.partitions],
                    ["replication", topic.replication], ["producers", ", ".join(topic.producers) or "—"],
                    ["consumers", ", ".join(topic.consumers) or "—"], ["readers", ", ".join(topic.readers) or "—"],
                    ["private (not readable by every person)", "yes" if topic.private else "no"],
                    ["personal fields (sealed in audit.log)", ", ".join(topic.personal) or "—"],
                    *[[f"config `{name}`", value] for name, value in sorted(topic.config.items())]]), ""]
    dead = [t for t in catalogue() if t.dead_letter_for is not None]
    out += ["## Dead-letter topics", "", "Every topic a service consumes has one: the refused message's bytes and "
            "headers, with the reason in `dlq.*` headers.", "",
            table(["topic", "for"], [[f"`{t.name}`", f"`{t.dead_letter_for}`"] for t in dead])]
    return "\n".join(out) + "\n", [t.name for t in topics]


def anchor(kind: str, name: str) -> str:
    return f"ref-{kind}-" + "".join(c if c.isalnum() else "-" for c in name.lower())


# ---- records ---------------------------------------------------------------------------------------------------

def schema_files() -> list[Path]:
    return sorted((ROOT / "schemas").glob("*.avsc")) + sorted((ROOT / "schemas" / "common").glob("*.avsc"))


def avro_type(kind) -> str:
    if isinstance(kind, list):
        return " | ".join(avro_type(k) for k in kind)
    if isinstance(kind, dict):
        if kind.get("logicalType"):
            return f"{kind['type']} ({kind['logicalType']})"
        if kind["type"] == "array":
            return f"array of {avro_type(kind['items'])}"
        if kind["type"] == "map":
            return f"map of {avro_type(kind['values'])}"
        if kind["type"] == "enum":
            return "enum " + ", ".join(kind["symbols"])
        return kind.get("name", kind["type"])
    return str(kind)


def records_page() -> tuple[str, list[str]]:
    """One section per Avro record: its doc, the topic that carries it, every field."""
    carried = {t.schema: t.name for t in catalogue() if t.schema}
    out, names = [], []
    for path in schema_files():
        schema = json.loads(path.read_text())
        full = f"{schema.get('namespace', 'mlbus')}.{schema['name']}"
        names.append(full)
        topic = f"on `{carried[full]}`" if full in carried else "a part of other records"
        out += [f"({anchor('record', full)})=", f"## `{full}`", "",
                f"{cell(schema.get('doc', ''))} ({topic}; `{path.relative_to(ROOT)}`)", "",
                table(["field", "type", "default", "meaning"],
                      [[f"`{f['name']}`", f"`{avro_type(f['type'])}`",
                        f"`{json.dumps(f['default'])}`" if "default" in f else "", f.get("doc", "")]
                       for f in schema["fields"]]), ""]
    contracts = sorted((ROOT / "schemas" / "datasets").glob("*.avsc"))
    out += ["## Data contracts", "", "Avro record schemas of datasets (`schemas/datasets/`): the validator's "
            "contract for each batch, not messages on the bus.", "",
            table(["dataset", "columns", "file"], [[json.loads(p.read_text())["name"],
                                                    len(json.loads(p.read_text())["fields"]),
                                                    f"`{p.relative_to(ROOT)}`"] for p in contracts])]
    return "\n".join(out) + "\n", names


# ---- the CLI ---------------------------------------------------------------------------------------------------

def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("mlbus",)):
    """(path, parser, help) for every command and sub-command, depth first, in the order `--help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name, "")
                yield from commands(sub, (*path, name))


def option_row(action: argparse.Action) -> list:
    name = ", ".join(action.option_strings) or action.metavar or action.dest
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.option_strings == [] else f"`{default}`"
    return [f"`{name}`", action.help or "", shown]


def cli_page() -> tuple[str, list[str]]:
    os.environ["COLUMNS"] = "88"            # usage and help wrap at the terminal's width: the page's code width
    from services.cli.main import parser
    root = parser()
    out = ["```text", root.format_help().strip(), "```", ""]
    names = []
    for path, sub, help_text in commands(root):
        name = " ".join(path)
        names.append(name)
        level = "#" * min(len(path), 4)
        rows = [option_row(a) for a in sub._actions
                if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        out += [f"({anchor('cli', name)})=", f"{level} `{name}`", "", cell(help_text or sub.description or ""), "",
                "```text", sub.format_usage().strip(), "```", ""]
        if rows:
            out += [table(["argument", "meaning", "default"], rows), ""]
    text = "\n".join(out) + "\n"
    return text.replace(str(Path.home()), "~"), names      # defaults argparse shows from this machine's home
