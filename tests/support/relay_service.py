"""A minimal service on the real runtime, for the runtime's own tests: every inference request becomes
one prediction whose id derives from the request's id. Impossible values (a NaN feature) are bad input.
Two entities stand for a hostile meaning the handler does not survive: a request for `poison-raise` raises an
exception that is not BadInput (dead-lettered at once), one for `poison-exit` ends the process outright (the
poison budget's tests).
MLBUS_RELAY_HANDLE_MS gives each request a handling cost, so a test that kills the relay mid-stream finds it
there (bare, it relays thousands of requests between two looks at its lag).

    MLBUS_RELAY_TRANSACTIONAL=1 python -m tests.support.relay_service
"""
import math
import os
import time

from services.bus import BadInput, Bus, Event, PerRecord, Received, RuntimeConfig, ServiceRuntime, derive_id
from services.bus.logs import configure_logging


HANDLE_S = float(os.environ.get("MLBUS_RELAY_HANDLE_MS", "0")) / 1000


def relay(message: Received):
    request = message.value
    if HANDLE_S:                               # stands in for the work of a real handler: busy, as work is
        until = time.process_time() + HANDLE_S
        while time.process_time() < until:
            pass
    if any(math.isnan(v) for v in request["features"].values()):
        raise BadInput("feature value is NaN")
    if request["entity_id"] == "poison-raise":
        raise RuntimeError("a meaning the handler does not survive")
    if request["entity_id"] == "poison-exit":
        os._exit(3)
    yield Event(record="mlbus.Prediction", key=request["entity_id"], id=derive_id(message.envelope.id, "relay"),
                value={"prediction_id": derive_id(message.envelope.id, "relay"), "request_id": request["request_id"],
                       "entity_id": request["entity_id"], "model": request["model"], "version": 1,
                       "variant": "champion", "served": True, "label": "relayed", "score": None,
                       "probabilities": {}, "latency_ms": 0.0, "deployment_id": None, "error": None,
                       "predicted_at": request["sent_at"]})


def main() -> None:
    bus = Bus.from_env(principal="scorer")      # it stands in for the scorer: the one writer of predictions
    configure_logging("relay", "json", os.environ.get("MLBUS_LOG_LEVEL", "warning"))
    ServiceRuntime(bus, "relay", PerRecord(relay), RuntimeConfig(
        topics=["inference.requests"], transactional=os.environ.get("MLBUS_RELAY_TRANSACTIONAL") == "1",
        batch_size=int(os.environ.get("MLBUS_RELAY_BATCH", "200")))).run()


if __name__ == "__main__":
    main()
