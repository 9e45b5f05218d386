"""featurizer: python -m services.featurizer — feature views computed once from the topics they name.

It consumes features.views (signed definitions) and the source topics (business.events), in Kafka transactions:
each batch's values go to the offline store (Parquet, MLBUS_FEATURES_OFFLINE), the online store (SQL,
MLBUS_FEATURES_DATABASE_URL) and features.online, with the batch's offsets. At start it rebuilds its windows from
the bus, and handles a backlog in event time (adapters.py). docs/explanation/feature-store.md.
"""
from prometheus_client import Counter

from services.bus import Batched, Bus, RuntimeConfig, ServiceRuntime
from services.bus.identity import act_verifier
from services.bus.logs import configure_logging
from services.adapters import OfflineStore, OnlineStore

from .adapters import catch_up, rebuild, source_records
from .core import FeaturizerState
from .handlers import Featurizer

VIEWS_TOPIC = "features.views"


def main() -> None:
    bus = Bus.from_env(principal="featurizer")
    configure_logging("featurizer", bus.settings.observability.log_format, bus.settings.observability.log_level)
    sources = {topic.name for topic in bus.catalogue.consumed_by("featurizer")} - {VIEWS_TOPIC}
    storage = bus.settings.storage
    featurizer = Featurizer(FeaturizerState(), OnlineStore(storage.features_database_url),
                            OfflineStore(storage.features_offline), act_verifier(bus), sources,
                            lambda topic, read_to: source_records(bus, topic, read_to))
    catch_up(bus, featurizer, rebuild(bus, featurizer, VIEWS_TOPIC))
    runtime = ServiceRuntime(bus, "featurizer", Batched(featurizer), RuntimeConfig(
        transactional=True, batch_size=1000, outputs=("mlbus.FeatureValue",)))
    values = Counter("mlbus_feature_values", "Feature values computed, by view", ["view"],
                     registry=runtime.metrics.registry)
    dropped = Counter("mlbus_feature_events_dropped", "Source events a view could not use (late, redelivered, "
                      "unusable), by view", ["view"], registry=runtime.metrics.registry)

    def count(made) -> None:
        for value in made.values:
            values.labels(value.view).inc()
        for view, _ in made.dropped:
            dropped.labels(view).inc()

    featurizer.on_made = count
    runtime.run()


if __name__ == "__main__":
    main()
