"""The drift-watcher's watch of feature views (issue 36): features.views (signed definitions) and features.online
followed in the background, each view version's windows of event time closed into DriftReports and alerts, and the
online values compared with the offline store's every SKEW_EVERY_S (services/domain/features_monitoring.py): the
skew metric and alert. Decisions live in feature_views.py; this is their edge: followers, the lock their thread and
the app's timer share, metrics, and `send` (the app's, which never sends an id twice)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import threading
import time
from collections import Counter as Tally
from typing import Awaitable, Callable

from services.adapters import OfflineStore, value_from_record, view_from_record
from services.bus import Bus, Event
from services.bus.errors import is_infrastructure
from services.bus.identity import ACT_SIGNERS, signed_only
from services.bus.poison import poison_record
from services.bus.projections.follow import Follower
from services.bus.projections.inventory import Inventory
from services.domain import ViewsRefused, skew

from .decide import SOURCE, report_event
from .feature_views import FeatureWatch, skew_alert, subject, view_alerts

FEATURE_RECORDS = ("mlbus.FeatureViewDefined", "mlbus.FeatureValue")
SKEW_EVERY_S = 300.0       # how often online values are compared with the offline store's
MAX_SKEW_QUEUE = 20_000    # online values awaiting that check (the newest per key; beyond: the oldest go)


class FeatureMetrics:
    """The feature views' series: values taken in or skipped, windows judged, and skew against the offline store."""

    def __init__(self, registry):
        from prometheus_client import Counter, Gauge
        self.values = Counter("mlbus_feature_values_watched_total", "Feature values taken into drift windows, per "
                              "view", ["view"], registry=registry)
        self.skipped = Counter("mlbus_feature_values_skipped_total", "Feature values and view definitions the "
                               "drift-watcher skipped, per reason", ["reason"], registry=registry)
        self.windows = Counter("mlbus_feature_drift_windows_total", "Feature view windows judged (drifted: yes|no)",
                               ["view", "version", "drifted"], registry=registry)
        self.drift_share = Gauge("mlbus_feature_drift_share", "Share of a view's features drifted in its latest "
                                 "window", ["view", "version"], registry=registry)
        self.compared = Counter("mlbus_feature_skew_compared_total", "Online feature values compared with the "
                                "offline store's", ["view", "version"], registry=registry)
        self.mismatches = Gauge("mlbus_feature_skew_mismatches", "Online feature values that differ from the "
                                "offline store's in the latest skew check (0: no skew)", ["view", "version"],
                                registry=registry)
        self.mismatched = Counter("mlbus_feature_skew_found_total", "Online feature values found differing "
                                  "from the offline store's, per reason (value-differs | missing-offline)",
                                  ["view", "version", "reason"], registry=registry)
        self.pending = Gauge("mlbus_feature_skew_pending", "Online feature values the offline store has not "
                             "reached yet, awaiting the next skew check", registry=registry)
        self.unchecked = Counter("mlbus_feature_skew_unread_total", "Skew checks of a view version whose offline "
                                 "store could not be read", ["view", "version"], registry=registry)


def feature_nonce(signer) -> str:
    """The nonce of feature windows' output ids: from the drift-watcher's private key (HMAC), so the same at every
    start and unknown to anyone else; '' without a signer (tests)."""
    key = getattr(signer, "private_key", None)
    return hmac.new(key, b"mlbus drift-watcher feature windows", hashlib.sha256).hexdigest()[:32] if key else ""


class FeatureViewsWatched:
    def __init__(self, bus: Bus, log, registry, verify, inventory: Inventory,
                 send: Callable[[Event], Awaitable[None]]):
        self.log, self.inventory, self.send = log, inventory, send
        # folded by the followers' thread, closed and checked by the app's timer: under one lock
        self.features, self.features_lock = FeatureWatch(), threading.Lock()
        self.skew_queue: dict[tuple, object] = {}
        self.skew_every_s, self._skew_at = SKEW_EVERY_S, None     # first: once features.online is read to its end
        self.offline = OfflineStore(bus.settings.storage.features_offline)
        self.nonce = feature_nonce(bus.signer)
        self.metrics = FeatureMetrics(registry)
        self.skipped: Tally[str] = Tally()
        # definitions read to their end before the values (values of a view version not defined are skipped)
        self.views_follower = Follower(bus, f"{SOURCE}-views", FEATURE_RECORDS[:1],
                                       [signed_only(self.fold, verify, ACT_SIGNERS)])
        self.feature_follower = Follower(bus, f"{SOURCE}-features", FEATURE_RECORDS[1:], [self.fold])

    def follow(self) -> None:
        """Read features.views, then features.online, to their end, then follow them (a large online store takes
        a while: the windows of models go on meanwhile). A follower that cannot start ends the process, loudly."""
        try:
            self.views_follower.start(timeout_s=600)
            self.feature_follower.start(timeout_s=3600)
        except Exception as error:          # noqa: BLE001 - restarted by the supervisor, as any failure to start
            self.log.critical("features not followed; the drift-watcher stops", error=repr(error))
            os._exit(1)

    def fold(self, record: str, value: dict) -> None:
        """A view definition (signed: only those are handed here) or an online value; one that cannot be used is
        skipped, said and counted by reason, never raised."""
        if record == "mlbus.FeatureViewDefined":
            try:
                view = view_from_record(value)
            except ViewsRefused as refused:
                self.skip("a view definition that does not parse", view=str(value.get("view"))[:80],
                          why=str(refused)[:300])
                return
            with self.features_lock:
                self.features.define(view)
            return
        found = value_from_record(value)
        with self.features_lock:
            why = self.features.add(found, int(time.time() * 1000))
            if why is None:
                key = (found.view, found.view_version, found.feature, found.entity)
                self.skew_queue.pop(key, None)
                self.skew_queue[key] = found
                while len(self.skew_queue) > MAX_SKEW_QUEUE:
                    self.skew_queue.pop(next(iter(self.skew_queue)))
        if why is None:
            self.metrics.values.labels(found.view).inc()
        else:
            self.skip(why)

    def skip(self, reason: str, **said) -> None:
        self.metrics.skipped.labels(reason).inc()
        self.skipped[reason] += 1
        if self.skipped[reason] in (1, 10, 100) or self.skipped[reason] % 1000 == 0:   # said, not a flood
            self.log.warning("feature record skipped", reason=reason, times=self.skipped[reason], **said)

    async def tick(self) -> None:
        """Close the feature windows that are due and send their reports and alerts; the skew check when due."""
        try:
            await self.close(int(time.time() * 1000))
            ready = self.feature_follower.ready.is_set() and self.feature_follower.error is None
            if ready and (self._skew_at is None or time.monotonic() - self._skew_at >= self.skew_every_s):
                self._skew_at = time.monotonic()
                for event in await asyncio.to_thread(self.check_skew, int(time.time() * 1000)):
                    await self.send(event)
        except Exception as error:             # noqa: BLE001 - told apart just below
            if is_infrastructure(error):
                self.log.critical("feature windows failed; the drift-watcher stops", error=repr(error))
                os._exit(1)
            poison_record(SOURCE, "tick", "features.online", -1, error)

    async def close(self, now_ms: int) -> None:
        trained = [entry.trained for entry in list(self.inventory.versions.values())]
        with self.features_lock:
            closed = self.features.close(now_ms)
            reports = [(window, self.features.report(window, trained, self.nonce)) for window in closed]
        for window, report in reports:
            if report is None:
                continue
            for output in [report_event(report), *view_alerts(report, self.nonce)]:
                await self.send(output)
            version = window.view.version[:16]
            self.metrics.windows.labels(window.view.name, version,
                                                "yes" if report["dataset_drift"] else "no").inc()
            self.metrics.drift_share.labels(window.view.name, version).set(report["drift_share"])
            self.log.info("feature window closed", view=subject(window.view.name, window.view.version),
                          window=window.id, drift_share=round(report["drift_share"], 3),
                          dataset_drift=report["dataset_drift"])

    def check_skew(self, now_ms: int) -> list[Event]:
        """The online values that came since the last check against the offline store (in a thread: it reads
        Parquet files); those it has not reached yet wait for the next check. Returns the alerts to send."""
        with self.features_lock:
            queued, self.skew_queue = self.skew_queue, {}
        by_view: dict[tuple[str, str], list] = {}
        for value in queued.values():
            by_view.setdefault((value.view, value.view_version), []).append(value)
        alerts_, pending = [], []
        for (view, version), values in sorted(by_view.items()):
            try:
                offline, positions = self.offline.at_keys(view, version,
                                                          {(v.feature, v.entity, v.event_ms) for v in values})
            except Exception as error:       # noqa: BLE001 - a missing or unreadable store: said, checked again
                self.metrics.unchecked.labels(view, version[:16]).inc()
                self.log.warning("offline store not read for the skew check", view=view, version=version[:16],
                                 error=repr(error)[:300])
                pending += values
                continue
            found = skew(values, offline, positions)
            pending += found.pending
            self.metrics.compared.labels(view, version[:16]).inc(found.compared)
            self.metrics.mismatches.labels(view, version[:16]).set(len(found.mismatches))
            for mismatch in found.mismatches:
                self.metrics.mismatched.labels(view, version[:16], mismatch.reason).inc()
            raised = skew_alert(view, version, found, now_ms, self.nonce)
            if raised is not None:
                self.log.warning("feature skew", view=view, version=version[:16], compared=found.compared,
                                 mismatches=len(found.mismatches))
                alerts_.append(raised)
        with self.features_lock:
            for value in pending:            # newer values that came meanwhile win
                self.skew_queue.setdefault((value.view, value.view_version, value.feature, value.entity), value)
            while len(self.skew_queue) > MAX_SKEW_QUEUE:
                self.skew_queue.pop(next(iter(self.skew_queue)))
            self.metrics.pending.set(len(self.skew_queue))
        return alerts_
