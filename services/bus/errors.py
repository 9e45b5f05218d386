"""The two kinds of failure the runtime tells apart: bad input goes to a DLQ, the rest crashes."""
from confluent_kafka import KafkaException

from .settings import ConfigError


class BadInput(Exception):
    """This message can never be handled as it is (undecodable, impossible values). It goes to the DLQ
    and the service moves on. An infrastructure failure (is_infrastructure) crashes the service instead:
    it commits nothing, and the message is handled again after the restart."""

    stage = "handle"


class DecodeError(BadInput):
    """The bytes are not a record the schema catalogue can read."""

    stage = "decode"


class WrongRecordType(DecodeError):
    """A record of another Avro type than its topic's catalogue schema: the topic decides the type, so a
    ModelLifecycle written to deploy.requests is refused, never folded or acted on."""


class HandlerFailed(BadInput):
    """A record its handler raised on (not a broker's or a database's failure): dead-lettered with the error,
    so that no record can stop a service (errors.is_infrastructure tells the two apart)."""

    stage = "handler"


class InfrastructureError(RuntimeError):
    """Something the service depends on is not there (a topic that cannot be read in time, a store): the
    service crashes loudly so it is restarted, and the message in hand is not held against (poison.py)."""


# Failures of what a service depends on, by the name their library gives them (the libraries are not imported
# here): the database is away or locked — not something one record means.
INFRASTRUCTURE_NAMES = {"OperationalError", "InterfaceError", "DisconnectionError", "InternalError"}
INFRASTRUCTURE_LIBRARIES = ("sqlalchemy", "sqlite3", "psycopg", "psycopg2", "confluent_kafka", "aiokafka")


def is_infrastructure(error: BaseException) -> bool:
    """Whether an exception says the service's surroundings failed (crash, to be restarted: the message is
    handled again then) rather than that the record in hand cannot be handled (dead-letter it, go on). The
    broker's failures, InfrastructureError, the operating system's (files, sockets, time-outs), a settings
    error and a database's operational errors are infrastructure; everything else a record made code raise
    (ValueError, KeyError, RecursionError, MemoryError, a database refusing a value, ...) is the record's."""
    if isinstance(error, (KafkaException, InfrastructureError, OSError, ConfigError)):
        return True
    kind = type(error)
    return kind.__name__ in INFRASTRUCTURE_NAMES and kind.__module__.split(".")[0] in INFRASTRUCTURE_LIBRARIES
