"""Access control derived from topics.yaml: the broker ACLs each principal needs, and nothing more (pure).

A service principal gets WRITE on the topics it produces (and the DLQs of those it consumes), READ on those it
consumes or reads (the auditor: the DLQs too), READ on its consumer groups (`<ns>mlbus.<principal>` and
`<ns>mlbus.<principal>.*`),
WRITE on its transactional ids (`<ns>mlbus.<principal>.*`) and IDEMPOTENT_WRITE on the cluster. A person gets
WRITE on the topics whose producers name one of their roles (`role:approver`), READ on every topic not marked
private and on the private ones whose readers name one of their roles (`role:dpo` on audit.keys), and their own
groups. The admin role holds every role but `dpo`. `every` in a list means every principal (the schemas topic).
DESCRIBE comes with READ and WRITE (Kafka implies it); the console may also DESCRIBE every group and topic, to
show lag. The broker's `admin` is a super user and needs no ACL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from .catalogue import Catalogue, Topic

EVERY = "every"
ROLE_PREFIX = "role:"
APP = "app"
ROLES = ("admin", "approver", "operator", "data-publisher", "data-scientist", "viewer", "dpo")
# Roles the admin role does not hold with the others: the data-protection officer's (reading audit.keys, the keys
# that open people's personal data in audit.log) is a duty of its own, given by name.
SEPARATE_ROLES = ("dpo",)
# The drift-watcher's faust application makes its own topics (observations, changelogs, assignor).
TOPIC_MAKERS = ("drift-watcher",)
# The console shows every service's consumer lag: it may DESCRIBE every mlbus group and topic (offsets and
# metadata, no message: reading a topic's messages still needs READ, which topics.yaml grants).
OBSERVERS = ("console",)
# The export bridge's principal (services/exporter): READ on the topics topics.yaml exports, CREATE, WRITE and READ
# on their copies, WRITE on their dead-letter topics.
EXPORTER = "exporter"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: principal (without `User:`), resource type, name, pattern type, operation."""

    principal: str
    resource: str           # topic | group | transactional_id | cluster
    name: str
    pattern: str            # literal | prefixed
    operation: str          # read | write | create | idempotent_write | ...

    def describe(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"User:{self.principal:16} {self.operation.upper():17} {self.resource}:{self.name}{star}"


def service_principals(catalogue: Catalogue) -> list[str]:
    """Every non-person principal the catalogue names (services and app)."""
    names = {APP}
    for topic in catalogue.primary():
        names.update(p for p in (*topic.producers, *topic.consumers, *topic.readers)
                     if p != EVERY and not p.startswith(ROLE_PREFIX))
    for topic in catalogue.exported():
        readers = topic.export.readers if topic.export else ()
        names.update([EXPORTER, *(p for p in readers if p != EVERY and not p.startswith(ROLE_PREFIX))])
    return sorted(names)


def plan_acls(catalogue: Catalogue, people: Mapping[str, Iterable[str]] | None = None) -> set[Grant]:
    """Every ACL the catalogue implies for its services, app, and these people (name → roles)."""
    people_roles = {name: set(roles) for name, roles in (people or {}).items()}
    services = service_principals(catalogue)
    grants: set[Grant] = set()
    for topic in catalogue:         # a DLQ's producers are its topic's consumers (catalogue.py)
        grants |= _topic_grants(catalogue, topic, services, people_roles)
    for principal in [*services, *people_roles]:
        grants |= _own_grants(catalogue.namespace, principal)
    for principal in TOPIC_MAKERS:
        prefix = f"{catalogue.namespace}mlbus.{principal}."
        grants |= {Grant(principal, "topic", prefix, "prefixed", op)
                   for op in ("create", "read", "write", "describe_configs")}
    for topic in catalogue.exported():
        grants |= _export_grants(catalogue, topic, services, people_roles)
    for principal in (o for o in OBSERVERS if o in services):
        grants.add(Grant(principal, "group", f"{catalogue.namespace}mlbus.", "prefixed", "describe"))
        grants |= {Grant(principal, "topic", catalogue.physical(t.name), "literal", "describe") for t in catalogue}
    return grants


def _topic_grants(catalogue: Catalogue, topic: Topic, services: list[str], people: dict[str, set[str]]) -> set[Grant]:
    name = catalogue.physical(topic.name)
    everyone = [*services, *people]
    writers = _expand(topic.producers, everyone, people)
    readers = _expand((*topic.consumers, *topic.readers), everyone, people)
    if not topic.private:
        readers |= set(people)
    return ({Grant(p, "topic", name, "literal", "write") for p in writers}
            | {Grant(p, "topic", name, "literal", "read") for p in readers})


def _export_grants(catalogue: Catalogue, topic: Topic, services: list[str],
                   people: dict[str, set[str]]) -> set[Grant]:
    """The exporter reads the topic, makes, writes and reads its copy (to see whether another export wrote it) and
    dead-letters into its DLQ; the export's readers
    (and every person, unless the topic is private) read the copy."""
    assert topic.export is not None
    copy = catalogue.copy_of(topic.name)
    readers = _expand(topic.export.readers, [*services, *people], people) | (set() if topic.private else set(people))
    dead_letters = [catalogue.physical(topic.dlq)] if topic.dlq in catalogue.topics else []
    return ({Grant(EXPORTER, "topic", catalogue.physical(topic.name), "literal", "read")}
            | {Grant(EXPORTER, "topic", copy, "literal", op) for op in ("create", "write", "read")}
            | {Grant(EXPORTER, "topic", dlq, "literal", "write") for dlq in dead_letters}
            | {Grant(p, "topic", copy, "literal", "read") for p in readers})


def _expand(entries: Iterable[str], everyone: list[str], people: dict[str, set[str]]) -> set[str]:
    principals: set[str] = set()
    for entry in entries:
        if entry == EVERY:
            principals.update(everyone)
        elif entry.startswith(ROLE_PREFIX):
            role = entry.removeprefix(ROLE_PREFIX)
            principals.update(name for name, roles in people.items() if holds(roles, role))
        else:
            principals.add(entry)
    return principals


def holds(roles: Iterable[str], role: str) -> bool:
    """Whether a person with these roles acts in `role` (admin acts in every role but the separate ones)."""
    roles = set(roles)
    return role in roles or ("admin" in roles and role not in SEPARATE_ROLES)


def _own_grants(namespace: str, principal: str) -> set[Grant]:
    group = f"{namespace}mlbus.{principal}"
    return {Grant(principal, "group", group, "literal", "read"),
            Grant(principal, "group", group + ".", "prefixed", "read"),
            Grant(principal, "transactional_id", group + ".", "prefixed", "write"),
            Grant(principal, "cluster", "kafka-cluster", "literal", "idempotent_write")}


def in_scope(grant: Grant, namespace: str) -> bool:
    """Grants on this namespace's resources (what `acl apply` for a namespace may report as extra)."""
    return grant.resource == "cluster" or grant.name.startswith(namespace)
