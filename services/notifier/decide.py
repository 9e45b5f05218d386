"""The notifier's decisions, pure: which sinks an alert goes to, which alerts one notification groups, what
is a repeat, when a failed sink is tried again — and the delivery record of every attempt.

Per sink, alerts wait in a first-in-first-out outbox: the first one opens a group that is sent
`group_window_s` later with every alert that joined it, in arrival order (so a model's alerts arrive in order).
A failed attempt keeps the group and tries it again after a back-off that doubles from `retry_initial_s` up to
`retry_max_s`; nothing is dropped while a sink is down. An alert whose (model, version, kind) was already sent
to that sink within `dedupe_window_s` is a repeat: recorded as `suppressed`, not sent. The outbox is rebuilt at
start from the alerts and the delivery records on the bus (routed minus delivered or suppressed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.bus import Event, derive_id

SINK_TYPES = {"webhook": ("json", "slack", "alertmanager"), "email": ("text",)}
SEVERITIES = ("info", "warning", "critical")


class NotifierConfigError(ValueError):
    """The notifier's YAML says something it cannot do."""


@dataclass(frozen=True)
class Route:
    sinks: tuple[str, ...]
    severities: tuple[str, ...] = ()     # empty: every severity
    models: tuple[str, ...] = ()         # empty: every model

    def matches(self, alert: dict) -> bool:
        return (not self.severities or alert["severity"] in self.severities) and \
            (not self.models or (alert["model"] or "") in self.models)


@dataclass(frozen=True)
class Config:
    sinks: dict[str, dict] = field(default_factory=dict)     # name → {type, format, url | host, port, from, to}
    routes: tuple[Route, ...] = ()
    group_window_s: float = 10.0
    dedupe_window_s: float = 300.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    max_age_s: float = 86_400.0          # an alert older than this when first seen is not sent (history)


def parse_config(raw: dict | None) -> Config:
    """The YAML (see compose/notifier.yaml) as a Config; NotifierConfigError names what is wrong."""
    raw = raw or {}
    sinks = {}
    for name, sink in (raw.get("sinks") or {}).items():
        kind = (sink or {}).get("type")
        if kind not in SINK_TYPES:
            raise NotifierConfigError(f"sink {name}: type must be one of {', '.join(SINK_TYPES)}, not {kind!r}")
        form = sink.get("format", SINK_TYPES[kind][0])
        if form not in SINK_TYPES[kind]:
            raise NotifierConfigError(f"sink {name}: format must be one of {', '.join(SINK_TYPES[kind])}")
        needed = ("url",) if kind == "webhook" else ("host", "from", "to")
        missing = [k for k in needed if not sink.get(k)]
        if missing:
            raise NotifierConfigError(f"sink {name}: needs {', '.join(missing)}")
        if kind == "email" and sink.get("username") and not sink.get("starttls"):
            raise NotifierConfigError(f"sink {name}: a login needs `starttls: true` (else the password crosses "
                                      f"the network in clear)")
        sinks[str(name)] = {**sink, "format": form}
    routes = []
    for i, route in enumerate(raw.get("routes") or []):
        unknown = [s for s in route.get("sinks", []) if s not in sinks]
        bad = [s for s in route.get("severity", []) if s not in SEVERITIES]
        if unknown or bad or not route.get("sinks"):
            raise NotifierConfigError(f"route {i + 1}: " + (f"unknown sinks {unknown}" if unknown else
                                      f"severities must be among {SEVERITIES}" if bad else "names no sink"))
        routes.append(Route(tuple(route["sinks"]), tuple(route.get("severity", [])), tuple(route.get("model", []))))
    timing = {k: float(raw[k]) for k in ("group_window_s", "dedupe_window_s", "retry_initial_s", "retry_max_s",
                                         "max_age_s") if k in raw}
    if any(v < 0 for v in timing.values()):
        raise NotifierConfigError("windows and retry delays must not be negative")
    return Config(sinks, tuple(routes), **timing)


def sinks_for(config: Config, alert: dict) -> list[str]:
    """Every sink a route sends this alert to, each once, in the config's order."""
    return list(dict.fromkeys(s for route in config.routes if route.matches(alert) for s in route.sinks))


@dataclass
class Outbox:
    queues: dict[str, list[dict]] = field(default_factory=dict)      # sink → alerts waiting, in arrival order
    due_ms: dict[str, int] = field(default_factory=dict)             # sink → when its group goes (next attempt)
    attempts: dict[str, int] = field(default_factory=dict)           # sink → failed attempts of the current group
    done: set[tuple[str, str]] = field(default_factory=set)          # (alert id, sink) delivered or suppressed
    sent: dict[tuple, int] = field(default_factory=dict)             # (sink, model, version, kind) → last sent at

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())


def repeat_key(sink: str, alert: dict) -> tuple:
    return sink, alert["model"], alert["version"], alert["kind"]


def at_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


SENT_KEPT = 10_000         # past this many repeat keys, those outside the dedupe window are forgotten


def on_alert(outbox: Outbox, config: Config, alert: dict, now: datetime) -> list[Event]:
    """Queue an alert for its sinks (a repeat within the dedupe window is recorded as suppressed instead)."""
    events, now_ms = [], at_ms(now)
    if too_old(config, alert, now):
        return []
    for sink in sinks_for(config, alert):
        queued = any(a["alert_id"] == alert["alert_id"] for a in outbox.queues.get(sink, []))
        if (alert["alert_id"], sink) in outbox.done or queued:
            continue                                            # delivered twice: notified once
        last = outbox.sent.get(repeat_key(sink, alert))
        if last is not None and now_ms - last < config.dedupe_window_s * 1000:
            event = delivery(config, sink, [alert], "suppressed", 0, now,
                             f"repeat of a {alert['kind']} alert sent {(now_ms - last) / 1000:.0f} s ago")
            apply_delivery(outbox, event.value)
            events.append(event)
            continue
        queue = outbox.queues.setdefault(sink, [])
        if not queue:
            outbox.due_ms[sink] = now_ms + int(config.group_window_s * 1000)
        queue.append(alert)
        outbox.sent[repeat_key(sink, alert)] = now_ms            # a repeat arriving while this one waits is one too
    if len(outbox.sent) > SENT_KEPT:                             # keyed by what senders choose (models, kinds):
        window_ms = config.dedupe_window_s * 1000               # only those still inside the window matter
        outbox.sent = {key: at for key, at in outbox.sent.items() if now_ms - at < window_ms}
    return events


def too_old(config: Config, alert: dict, now: datetime) -> bool:
    return (now - alert["raised_at"]).total_seconds() > config.max_age_s


MAX_GROUP = 1000       # alerts in one message: their ids (at most 256 characters each) keep AlertDelivered under 1 MiB


def due_groups(outbox: Outbox, now: datetime) -> list[tuple[str, list[dict]]]:
    """The sinks whose group is due now, with the alerts it holds (in order, at most MAX_GROUP: the rest go
    at the next tick)."""
    now_ms = at_ms(now)
    return [(sink, queue[:MAX_GROUP]) for sink, queue in sorted(outbox.queues.items())
            if queue and outbox.due_ms.get(sink, 0) <= now_ms]


def after_attempt(outbox: Outbox, config: Config, sink: str, group: list[dict], error: str | None,
                  now: datetime) -> Event:
    """Record an attempt: delivered (the group leaves the outbox) or failed (tried again after a back-off)."""
    attempt = outbox.attempts.get(sink, 0) + 1
    event = delivery(config, sink, group, "failed" if error else "delivered", attempt, now, error)
    apply_delivery(outbox, event.value)
    if error:
        outbox.attempts[sink] = attempt
        outbox.due_ms[sink] = at_ms(now) + int(backoff_s(config, attempt) * 1000)
    return event


def backoff_s(config: Config, attempt: int) -> float:
    return min(config.retry_max_s, config.retry_initial_s * 2 ** (attempt - 1))


def apply_delivery(outbox: Outbox, record: dict) -> None:
    """Fold a delivery record in (live, and at start from the topic)."""
    if record["outcome"] not in ("delivered", "suppressed"):
        return
    sink, ids = record["sink"], set(record["alert_ids"])
    outbox.done.update((alert_id, sink) for alert_id in ids)
    outbox.queues[sink] = [a for a in outbox.queues.get(sink, []) if a["alert_id"] not in ids]
    if record["outcome"] == "delivered":
        outbox.attempts.pop(sink, None)


def delivery(config: Config, sink: str, group: list[dict], outcome: str, attempt: int, now: datetime,
             error: str | None = None) -> Event:
    ids = [a["alert_id"] for a in group]
    delivery_id = derive_id("delivery", sink, *ids, outcome, attempt)
    models = sorted({a["model"] or "" for a in group})
    return Event("mlbus.AlertDelivered", key=sink, id=delivery_id, subject=",".join(models), value={
        "delivery_id": delivery_id, "sink": sink, "sink_type": config.sinks[sink]["type"],
        "format": config.sinks[sink]["format"], "alert_ids": ids, "models": models,
        "severities": sorted({a["severity"] for a in group}), "outcome": outcome, "attempt": attempt,
        "error": error, "attempted_at": now})


def rebuild(config: Config, alerts: list[dict], deliveries: list[dict], now: datetime) -> Outbox:
    """The outbox after a restart: every routed alert (younger than max_age_s) not yet delivered nor suppressed,
    due now. Those the consumer has not reached yet are queued here already; on_alert then skips them."""
    outbox = Outbox()
    for record in deliveries:
        apply_delivery(outbox, record)
    for alert in alerts:
        if too_old(config, alert, now):
            continue
        for sink in sinks_for(config, alert):
            if (alert["alert_id"], sink) not in outbox.done:
                outbox.queues.setdefault(sink, []).append(alert)
                outbox.due_ms.setdefault(sink, at_ms(now))
    return outbox


def summary(group: list[dict]) -> str:
    """One line for a group: '2 alerts: [critical] claims_fraud v2 drift: …; …'."""
    return f"{len(group)} alert{'s' if len(group) > 1 else ''}: " + "; ".join(
        f"[{a['severity']}] {a['model'] or '-'}{' v%s' % a['version'] if a['version'] is not None else ''} "
        f"{a['kind']}: {a['message']}" for a in group)
