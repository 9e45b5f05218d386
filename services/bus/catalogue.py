"""The topic catalogue: topics.yaml as typed, validated objects. Code asks here for every topic."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

DLQ_SUFFIX = ".dlq"
EXPORT_TARGETS = {"confluent": ".confluent"}  # framing an export bridge writes copies in → the copies' name suffix
WIRES = ("single-object", "confluent")      # how a topic's records are framed (services/bus/codec.py)
SINGLE_OBJECT_ONLY = ("mlbus.AuditRecord", "mlbus.SchemaDefinition")   # whatever MLBUS_WIRE says


class CatalogueError(ValueError):
    """topics.yaml is malformed or inconsistent."""


@dataclass(frozen=True)
class Export:
    """topics.yaml `export: {to: confluent, readers: [...]}`: the topic may be mirrored into `<name>.confluent`
    by the `exporter` principal. A private topic, or one with personal fields, is refused unless the entry says
    `allow_personal: true`: a copy is beyond `mlbus audit forget` (which erases from audit.log only)."""

    to: str
    readers: tuple[str, ...] = ()       # principals (or role:NAME) that read the copies
    allow_personal: bool = False

    def copy_of(self, topic: str) -> str:
        return topic + EXPORT_TARGETS[self.to]


@dataclass(frozen=True)
class Topic:
    name: str
    schema: str | None          # Avro full name; None for a dead-letter topic (raw bytes)
    key: str
    partitions: int
    replication: int
    config: Mapping[str, str]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    purpose: str
    dead_letter_for: str | None = None
    readers: tuple[str, ...] = ()       # read without consuming as input (rebuilding state, reference data)
    private: bool = False               # not readable by every person (features and labels)
    personal: tuple[str, ...] = ()      # fields of a person's data, sealed in audit.log by the message key ("*": all)
    wire: str | None = None             # single-object | confluent; None: the deployment's (MLBUS_WIRE)
    export: Export | None = None        # copies an export bridge may write (services/exporter), with who reads them

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX

    def as_dict(self) -> dict:
        return {"name": self.name, "schema": self.schema, "key": self.key, "partitions": self.partitions,
                "replication": self.replication, "config": dict(self.config),
                "producers": list(self.producers), "consumers": list(self.consumers),
                "readers": list(self.readers), "private": self.private, "personal": list(self.personal),
                "purpose": self.purpose, "dead_letter_for": self.dead_letter_for, "wire": self.wire,
                "export": None if self.export is None else {"to": self.export.to, "readers": list(self.export.readers),
                                                            "allow_personal": self.export.allow_personal}}


@dataclass(frozen=True)
class Catalogue:
    topics: Mapping[str, Topic]
    namespace: str = ""             # physical names get this prefix: isolates tests and tenants
    _by_schema: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> Topic:
        try:
            return self.topics[name]
        except KeyError:
            raise CatalogueError(f"unknown topic {name!r}; topics.yaml has: {', '.join(self.topics)}") from None

    def __iter__(self):
        return iter(self.topics.values())

    def physical(self, name: str) -> str:
        """The name on the broker: the catalogue name behind the namespace prefix."""
        return self.namespace + self[name].name

    def logical(self, physical_name: str) -> str:
        return physical_name.removeprefix(self.namespace)

    def copy_of(self, name: str) -> str:
        """The physical name of a topic's export copy; CatalogueError when topics.yaml does not export it."""
        export = self[name].export
        if export is None:
            exportable = ", ".join(t.name for t in self.exported()) or "none"
            raise CatalogueError(f"topic {name} is not exportable: give it `export: {{to: confluent}}` in topics.yaml "
                                 f"and run `mlbus acl apply` (exportable now: {exportable})")
        return self.namespace + export.copy_of(name)

    def exported(self) -> list[Topic]:
        return [t for t in self if t.export is not None]

    def for_schema(self, schema: str) -> Topic:
        """The one topic that carries records of this Avro type (handlers emit records, not topics)."""
        try:
            return self.topics[self._by_schema[schema]]
        except KeyError:
            raise CatalogueError(f"no topic in topics.yaml carries {schema}") from None

    def confluent_records(self, default_wire: str) -> set[str]:
        """The record types written in Confluent's framing: their topic's `wire`, else the deployment's."""
        return {t.schema for t in self.primary() if t.schema is not None and t.schema not in SINGLE_OBJECT_ONLY
                and (t.wire or default_wire) == "confluent"}

    def consumed_by(self, service: str) -> list[Topic]:
        return [t for t in self if service in t.consumers]

    def primary(self) -> list[Topic]:
        return [t for t in self if t.dead_letter_for is None]


def load_catalogue(path: Path, namespace: str = "", replication: int | None = None) -> Catalogue:
    raw = yaml.safe_load(path.read_text())
    return build_catalogue(raw, namespace, replication)


def build_catalogue(raw: Mapping, namespace: str = "", replication: int | None = None) -> Catalogue:
    defaults = raw.get("defaults", {})
    topics: dict[str, Topic] = {}
    for entry in raw.get("topics", []):
        topic = _topic(entry, defaults, replication)
        if topic.name in topics:
            raise CatalogueError(f"topic {topic.name} is listed twice in topics.yaml")
        topics[topic.name] = topic
        if topic.consumers:
            dlq = _dead_letter_topic(topic, defaults)
            topics[dlq.name] = dlq
    for topic in list(topics.values()):
        if topic.export is not None and topic.export.copy_of(topic.name) in topics:
            raise CatalogueError(f"topic {topic.name}: its export copy {topic.export.copy_of(topic.name)} is a "
                                 "topic of topics.yaml already")
    return Catalogue(topics=topics, namespace=namespace, _by_schema=_schema_index(topics.values()))


def _topic(entry: Mapping, defaults: Mapping, replication: int | None) -> Topic:
    missing = {"name", "schema", "key", "purpose"} - set(entry)
    if missing:
        raise CatalogueError(f"topic {entry.get('name', '?')} lacks {', '.join(sorted(missing))}")
    config = {**defaults.get("config", {}), **entry.get("config", {})}
    return Topic(
        name=entry["name"], schema=entry["schema"], key=entry["key"],
        partitions=int(entry.get("partitions", defaults.get("partitions", 1))),
        replication=replication or int(entry.get("replication", defaults.get("replication", 1))),
        config={k: str(v) for k, v in config.items()},
        producers=tuple(entry.get("producers", [])), consumers=tuple(entry.get("consumers", [])),
        readers=tuple(entry.get("readers", [])), private=bool(entry.get("private", False)),
        personal=tuple(entry.get("personal", [])), purpose=entry["purpose"], wire=_wire(entry), export=_export(entry))


def _export(entry: Mapping) -> Export | None:
    raw = entry.get("export")
    if raw is None:
        return None
    name = entry["name"]
    if not isinstance(raw, Mapping) or raw.get("to") not in EXPORT_TARGETS or set(raw) - {"to", "readers",
                                                                                          "allow_personal"}:
        raise CatalogueError(f"topic {name}: export must be {{to: {' | '.join(EXPORT_TARGETS)}, readers: [...], "
                             f"allow_personal: true|false}}, not {raw!r}")
    export = Export(raw["to"], tuple(raw.get("readers", [])), raw.get("allow_personal") is True)
    if not entry.get("consumers"):
        raise CatalogueError(f"topic {name}: only a consumed topic may be exported (a record the bridge cannot copy "
                             f"goes to {name}{DLQ_SUFFIX}, which only a consumed topic has)")
    sensitive = [why for why, holds in (("private", entry.get("private")),
                                        (f"personal fields {entry.get('personal')}", entry.get("personal"))) if holds]
    if sensitive and not export.allow_personal:
        raise CatalogueError(f"topic {name} is {' and has '.join(sensitive)}: an exported copy is beyond "
                             "`mlbus audit forget` (it erases from audit.log only); add `allow_personal: true` to "
                             "its export to copy it anyway (the copy of a private topic is private too)")
    return export


def _wire(entry: Mapping) -> str | None:
    wire = entry.get("wire")
    if wire is None:
        return None
    if wire not in WIRES:
        raise CatalogueError(f"topic {entry['name']}: wire {wire!r} is not one of {', '.join(WIRES)}")
    if entry["schema"] in SINGLE_OBJECT_ONLY and wire != WIRES[0]:
        raise CatalogueError(f"topic {entry['name']}: {entry['schema']} is written in single-object encoding only "
                             "(mlbus's own record: the compiled audit paths and the schema topic read it so)")
    return wire


def _dead_letter_topic(topic: Topic, defaults: Mapping) -> Topic:
    return Topic(
        name=topic.dlq, schema=None, key=topic.key, partitions=1, replication=topic.replication,
        config={k: str(v) for k, v in defaults.get("dlq_config", {}).items()},
        producers=topic.consumers, consumers=(), readers=tuple(defaults.get("dlq_readers", [])),
        dead_letter_for=topic.name, private=True, personal=("*",) if topic.personal else (),
        purpose=f"Messages from {topic.name} that could not be handled: original bytes, reason in headers.")


def _schema_index(topics: Iterable[Topic]) -> dict[str, str]:
    index: dict[str, str] = {}
    for topic in topics:
        if topic.schema is None:
            continue
        if topic.schema in index:
            raise CatalogueError(f"{topic.schema} is carried by both {index[topic.schema]} and {topic.name}")
        index[topic.schema] = topic.name
    return index
