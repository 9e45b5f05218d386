"""notifier: python -m services.notifier (config: MLBUS_NOTIFIER_CONFIG, a YAML file; see compose/notifier.yaml)."""
from datetime import datetime, timezone

from services.bus import Bus, PerRecord, RuntimeConfig, ServiceRuntime, Ticker
from services.bus.logs import configure_logging, get_logger
from services.bus.replay import fold_history

from .decide import rebuild
from .handlers import Notifier
from .settings import load_config
from .sinks import send


def main() -> None:
    bus = Bus.from_env(principal="notifier")
    configure_logging("notifier", bus.settings.observability.log_format, bus.settings.observability.log_level)
    config = load_config(bus.settings.services.notifier_config)
    if not config.routes:
        get_logger(component="notifier").warning("no routes: alerts are recorded, not sent",
                                                 config=str(bus.settings.services.notifier_config))
    alerts, deliveries = [], []
    fold_history(bus, ("mlbus.Alert", "mlbus.AlertDelivered"),
                 lambda record, value: (alerts if record == "mlbus.Alert" else deliveries).append(value))
    outbox = rebuild(config, alerts, deliveries, datetime.now(timezone.utc))
    notifier = Notifier(config, outbox, send)
    config = RuntimeConfig(transactional=True, batch_size=200, ticker=Ticker(notifier.tick, every_s=0.5))
    ServiceRuntime(bus, "notifier", PerRecord(notifier), config).run()


if __name__ == "__main__":
    main()
