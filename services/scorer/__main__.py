"""scorer: answers inference.requests with the versions the deployments route to, in micro-batches with
one vectorised predict per version. Run N copies (MLBUS_INSTANCE) to share the request partitions; each
copy reads deployments and models.trained from every partition in a background thread, and features.views and
features.online in another: a version trained on feature views has the features a request lacks looked up in the
scorer's own copy of the online store (services/scorer/features.py).

    python -m services.scorer

Delivery (MLBUS_SCORER_DELIVERY): `exactly-once` (default) answers each micro-batch in one Kafka transaction
with its offsets — no request is answered twice, even across crashes, at one commit per batch (5-15 ms on a
local broker). `at-least-once` flushes the batch's predictions and then commits its offsets: lower latency,
and after a crash some requests are answered again, with the same prediction_id (derived from the request's
event id), so readers can drop the copies. See the README (Guarantees, Performance).
"""
from services.bus import Batched, Bus, RuntimeConfig, ServiceRuntime
from services.bus.logs import configure_logging
from services.adapters import ArtifactStore

from .features import open_features
from .scorer import DELIVERY, PredictionMetrics, RoutingTable, Scorer


def main() -> None:
    bus = Bus.from_env(principal="scorer")
    configure_logging("scorer", bus.settings.observability.log_format, bus.settings.observability.log_level)
    table = RoutingTable(bus)
    features, feature_follower = open_features(bus)
    scorer = Scorer(table, ArtifactStore.from_settings(bus.settings), features=features)
    table.on_deployment = scorer.preload
    # the views and online values there are now, before the first request: the store takes ~3,000 values/s
    # (measured, 20,000 in 6.3 s), so a large features.online needs more than the routing table's 60 s
    feature_follower.start(timeout_s=600)
    table.start()
    runtime = ServiceRuntime(bus, "scorer", Batched(scorer), RuntimeConfig(
        topics=["inference.requests"], transactional=DELIVERY[bus.settings.services.scorer_delivery], batch_size=1000,
        rewindable=True))
    scorer.metrics = PredictionMetrics(runtime.metrics.registry)
    runtime.run()


if __name__ == "__main__":
    main()
