"""One observation's changes to the drift-watcher's table, made as one. Pure: any mapping is a table here.

faust writes a table's changes to its changelog a key at a time, and after a kill -9 the table comes back as a
prefix of them. One observation changes several keys — a request its row, its id, its groups and the head; a
closing window its head, the retraining run and what is kept of it — so a prefix could hold half of one: a
request's id without the head that counts its row (read again, the request is then skipped as a duplicate and
its row lost), or a window half emptied under a head still open (closed again, with fewer rows).

So an observation's changes are staged (`Staged`), then written head first with every other change inside it,
then each (`commit`); before a model's first observation after a start, `recover` applies its head's changes
again. Each change is a value or a deletion, so applying it twice is applying it once: whatever prefix the
changelog kept, the table is as after a whole number of observations, and the head's offset says how many.
Nothing that grows with a window goes inside a head: a row, an id, a count.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

CHANGES = "changes"        # the head's field holding its observation's changes: key -> value, None to delete


class Staged:
    """Reads through to the table, writes held back: what one observation changes, as `changes`."""

    def __init__(self, table: MutableMapping[str, Any]):
        self.table = table
        self.changes: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.changes:
            value = self.changes[key]
            return default if value is None else value
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError(f"{key}: None stands for a deletion, it is not a value the table keeps")
        self.changes[key] = value

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key, default)
        self.changes[key] = None
        return value


def commit(table: MutableMapping[str, Any], head_key: str, head: dict, changes: dict[str, Any]) -> None:
    """The head first, carrying the changes, then each change."""
    table[head_key] = {**head, CHANGES: changes}
    apply(table, changes)


def recover(table: MutableMapping[str, Any], head_key: str) -> None:
    """The changes of the head's observation applied again: a kill may have come between the head and them."""
    head = table.get(head_key)
    if head:
        apply(table, head.get(CHANGES) or {})


def apply(table: MutableMapping[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
