"""At-least-once offsets between a batch's flush and the broker's word that they are committed.

After each batch the runtime commits asynchronously and goes on; the offsets stay here, in flight, until the
broker confirms them. A refused commit puts them back to be sent with the next one. As partitions are revoked,
and at a stop, everything still owed for them (pending or in flight) is committed and waited for, so the next
owner starts where this copy stopped. Pure bookkeeping: no client calls here."""
from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[str, int]          # (physical topic, partition)


@dataclass
class OffsetsToCommit:
    pending: dict[Key, int] = field(default_factory=dict)      # not sent yet (or sent and refused)
    in_flight: dict[Key, int] = field(default_factory=dict)    # sent asynchronously, not confirmed yet

    def add(self, offsets: dict[Key, int]) -> None:
        """The next offsets of a flushed batch (the offset of the next message to read, per partition)."""
        for key, offset in offsets.items():
            self.pending[key] = max(offset, self.pending.get(key, -1))

    def send_async(self) -> dict[Key, int]:
        """What to commit asynchronously now: everything pending, which is in flight from here on."""
        sending, self.pending = self.pending, {}
        for key, offset in sending.items():
            self.in_flight[key] = max(offset, self.in_flight.get(key, -1))
        return sending

    def owed(self, keys: set[Key] | None = None) -> dict[Key, int]:
        """Everything not confirmed for these partitions (all when None): what a waiting commit sends."""
        owed: dict[Key, int] = {}
        for source in (self.in_flight, self.pending):
            for key, offset in source.items():
                if keys is None or key in keys:
                    owed[key] = max(offset, owed.get(key, -1))
        return owed

    def settled(self, committed: dict[Key, int]) -> None:
        """The broker recorded these offsets (a confirmed asynchronous commit, or a waiting one)."""
        for source in (self.in_flight, self.pending):
            for key, offset in committed.items():
                if key in source and source[key] <= offset:
                    del source[key]

    def refused(self, attempted: dict[Key, int]) -> None:
        """An asynchronous commit the broker refused: its offsets are pending again, unless newer ones are."""
        for key, offset in attempted.items():
            if self.in_flight.get(key) == offset:
                del self.in_flight[key]
                self.pending[key] = max(offset, self.pending.get(key, -1))

    def forget(self, keys: set[Key]) -> None:
        """Partitions this copy no longer owns (revoked): their next owner reads from the committed offset."""
        for source in (self.in_flight, self.pending):
            for key in keys & set(source):
                del source[key]
