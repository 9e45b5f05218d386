"""The two kinds of failure the runtime tells apart: bad input goes to a DLQ, the rest crashes."""


class BadInput(Exception):
    """This message can never be handled as it is (undecodable, impossible values). It goes to the DLQ
    and the service moves on. Any other exception is an infrastructure failure: the service crashes,
    commits nothing, and the message is handled again after the restart."""

    stage = "handle"


class DecodeError(BadInput):
    """The bytes are not a record the schema catalogue can read."""

    stage = "decode"


class WrongRecordType(DecodeError):
    """A record of another Avro type than its topic's catalogue schema: the topic decides the type, so a
    ModelLifecycle written to deploy.requests is refused, never folded or acted on."""


class InfrastructureError(RuntimeError):
    """Something the service depends on is not there (a topic that cannot be read in time, a store): the
    service crashes loudly so it is restarted, and the message in hand is not held against (poison.py)."""
