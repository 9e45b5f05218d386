"""drift-watcher: python -m services.drift_watcher (one instance; see app.py for the topology)."""
import os
from dataclasses import replace
import threading

import faust

from services.bus import Bus
from services.bus.service_keys import enrolled_signer
from services.bus.logs import configure_logging, get_logger

from .app import DriftWatcher

STOP_GRACE_S = 15.0


class Worker(faust.Worker):
    """Faust's worker, with a deadline on stopping, so SIGTERM always means "stop" (faust has hung in
    shutdown, e.g. in exactly-once mode). Leaving early is safe: what was not committed is handled again
    after the restart, and app.py makes that redelivery harmless."""

    def _on_sigterm(self) -> None:
        self._stopping()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._stopping()
        super()._on_sigint()

    def _stopping(self) -> None:
        """Stop the router and start the deadline (a daemon timer: a clean stop does not wait for it)."""
        self.router.stop()
        timer = threading.Timer(STOP_GRACE_S, self._leave)
        timer.daemon = True
        timer.start()

    @staticmethod
    def _leave() -> None:
        get_logger(component="drift-watcher").warning("faust did not stop in time; leaving", grace_s=STOP_GRACE_S)
        os._exit(0)


def main() -> None:
    bus = Bus.from_env(principal="drift-watcher")
    configure_logging("drift-watcher", bus.settings.observability.log_format, bus.settings.observability.log_level)
    bus = replace(bus, signer=enrolled_signer(bus, "drift-watcher"))     # its retraining requests are signed
    watcher = DriftWatcher(bus)
    watcher.start_reference_data()
    debug = bus.settings.observability.log_level.lower() == "debug"
    worker = Worker(watcher.app, loglevel="INFO" if debug else "WARNING", quiet=True)
    worker.router = watcher.router
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
