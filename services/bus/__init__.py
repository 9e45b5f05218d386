"""The shared bus library: catalogue, codec, envelope, settings, logging, runtime, DLQ, projections.

Services import from here and from nothing else in mlbus. A new service is a handler:

    from services.bus import Bus, Event, PerRecord, RuntimeConfig, ServiceRuntime, derive_id

    def handle(message):                       # a Received: topic, key, record, value, envelope
        yield Event(record="mlbus.Alert", value={...}, key=message.key, id=derive_id(message.envelope.id))

    config = RuntimeConfig(topics=["inference.predictions"])
    ServiceRuntime(Bus.from_env(), "my-service", PerRecord(handle), config).run()
"""
from .context import Bus
from .envelope import Envelope, Event, derive_id, new_id
from .errors import BadInput, DecodeError
from .publish import DeliveryError, Publisher
from .received import Received
from .modes import Batched, Forward, PerRecord, RawBatch, RuntimeConfig, Task, Ticker
from .runtime import ServiceRuntime
from .settings import ConfigError, Settings

__all__ = ["Bus", "Envelope", "Event", "derive_id", "new_id", "BadInput", "DecodeError", "DeliveryError",
           "Publisher", "Received", "ServiceRuntime", "PerRecord", "Batched", "RawBatch", "Forward", "RuntimeConfig",
           "Task", "Ticker", "ConfigError", "Settings"]
