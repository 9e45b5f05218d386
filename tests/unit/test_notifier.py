"""The notifier's pure core and payloads: routing by severity and model, grouping within a window, repeats
suppressed, a failed group kept and retried after a doubling back-off, the outbox rebuilt from the record; the
Slack, Alertmanager, JSON and email shapes. The handler runs with an in-memory sink."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from services.notifier.decide import (NotifierConfigError, Outbox, after_attempt, backoff_s, due_groups, on_alert,
                                      parse_config, rebuild, sinks_for)
from services.notifier.handlers import Notifier
from services.notifier.sinks import email_message, webhook_body
from tests.support.handlers import received

T0 = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
RAW = {"sinks": {"hook": {"type": "webhook", "url": "http://x/h"},
                 "slack": {"type": "webhook", "format": "slack", "url": "http://x/s"},
                 "mail": {"type": "email", "host": "localhost", "from": "m@x", "to": ["o@x"]}},
       "routes": [{"severity": ["critical"], "sinks": ["mail", "hook"]}, {"model": ["claims"], "sinks": ["slack"]}],
       "group_window_s": 10, "dedupe_window_s": 300, "retry_initial_s": 1, "retry_max_s": 8}
CONFIG = parse_config(RAW)


def alert(n: int, model: str = "m", severity: str = "critical", kind: str | None = None, version: int = 1) -> dict:
    return {"alert_id": f"a{n}", "kind": kind or f"kind{n}", "severity": severity, "model": model, "version": version,
            "message": f"message {n}", "evidence_json": "{}", "cause_id": f"c{n}", "raised_at": T0}


def test_routes_pick_sinks_by_severity_and_model_each_once():
    assert sinks_for(CONFIG, alert(1)) == ["mail", "hook"]
    assert sinks_for(CONFIG, alert(2, model="claims", severity="warning")) == ["slack"]
    assert sinks_for(CONFIG, alert(3, model="claims")) == ["mail", "hook", "slack"]
    assert sinks_for(CONFIG, alert(4, severity="info")) == []


@pytest.mark.parametrize("change, says", [
    ({"sinks": {"x": {"type": "pager"}}}, "type must be one of"),
    ({"sinks": {"x": {"type": "webhook", "format": "teams", "url": "u"}}}, "format must be one of"),
    ({"sinks": {"x": {"type": "email", "host": "h"}}}, "needs from, to"),
    ({"routes": [{"sinks": ["nowhere"]}]}, "unknown sinks"),
    ({"routes": [{"severity": ["urgent"], "sinks": ["hook"]}]}, "severities must be among"),
    ({"retry_max_s": -1}, "must not be negative"),
])
def test_a_config_it_cannot_follow_is_refused_by_name(change, says):
    with pytest.raises(NotifierConfigError, match=says):
        parse_config({**RAW, **change})


def test_alerts_within_the_window_go_as_one_group_in_arrival_order():
    outbox = Outbox()
    on_alert(outbox, CONFIG, alert(1), T0)
    on_alert(outbox, CONFIG, alert(2), T0 + timedelta(seconds=4))
    assert due_groups(outbox, T0 + timedelta(seconds=9)) == []
    groups = dict(due_groups(outbox, T0 + timedelta(seconds=10)))
    assert [a["alert_id"] for a in groups["hook"]] == ["a1", "a2"] and set(groups) == {"hook", "mail"}
    done = after_attempt(outbox, CONFIG, "hook", groups["hook"], None, T0 + timedelta(seconds=10))
    assert done.value["outcome"] == "delivered" and done.value["alert_ids"] == ["a1", "a2"]
    assert outbox.queues["hook"] == [] and on_alert(outbox, CONFIG, alert(1), T0) == []     # a redelivery: once


def test_a_repeat_within_the_dedupe_window_is_recorded_as_suppressed_not_sent():
    outbox = Outbox()
    on_alert(outbox, CONFIG, alert(1, kind="drift"), T0)
    [suppressed, _] = on_alert(outbox, CONFIG, alert(2, kind="drift"), T0 + timedelta(seconds=60))
    assert suppressed.value["outcome"] == "suppressed" and "repeat of a drift alert sent 60 s ago" in suppressed.value["error"]
    assert [a["alert_id"] for a in outbox.queues["hook"]] == ["a1"]
    assert on_alert(outbox, CONFIG, alert(3, kind="drift", version=2), T0) == []         # another version: news
    later = on_alert(outbox, CONFIG, alert(4, kind="drift"), T0 + timedelta(seconds=301))
    assert later == [] and outbox.queues["hook"][-1]["alert_id"] == "a4"


def test_a_failed_group_stays_and_is_tried_after_a_doubling_back_off():
    outbox = Outbox()
    on_alert(outbox, CONFIG, alert(1), T0)
    now = T0 + timedelta(seconds=10)
    waits = []
    for attempt in range(1, 6):
        [group] = [g for s, g in due_groups(outbox, now) if s == "hook"]
        failed = after_attempt(outbox, CONFIG, "hook", group, "ConnectionRefusedError: refused", now)
        assert failed.value["outcome"] == "failed" and failed.value["attempt"] == attempt
        waits.append(backoff_s(CONFIG, attempt))
        now += timedelta(seconds=waits[-1])
    assert waits == [1, 2, 4, 8, 8] and [a["alert_id"] for a in outbox.queues["hook"]] == ["a1"]
    on_alert(outbox, CONFIG, alert(2), now)                      # joins the waiting group, behind a1
    [group] = [g for s, g in due_groups(outbox, now) if s == "hook"]
    assert [a["alert_id"] for a in group] == ["a1", "a2"]
    assert after_attempt(outbox, CONFIG, "hook", group, None, now).value["attempt"] == 6


def test_the_outbox_is_rebuilt_from_the_alerts_and_delivery_records():
    outbox = Outbox()
    on_alert(outbox, CONFIG, alert(1), T0)
    delivered = after_attempt(outbox, CONFIG, "hook", [alert(1)], None, T0 + timedelta(seconds=10)).value
    old = {**alert(9), "raised_at": T0 - timedelta(days=2)}
    again = rebuild(CONFIG, [alert(1), alert(2), old], [delivered], T0 + timedelta(seconds=20))
    assert [a["alert_id"] for a in again.queues["hook"]] == ["a2"]
    assert [a["alert_id"] for a in again.queues["mail"]] == ["a1", "a2"]           # mail never took a1
    assert dict(due_groups(again, T0 + timedelta(seconds=20)))                      # due at once


def test_payloads_in_slack_alertmanager_json_and_email_shapes():
    group = [alert(1), alert(2, severity="warning", model=None, version=None)]
    slack = webhook_body("slack", group)
    assert slack["text"] == "mlbus: 2 alerts" and slack["blocks"][0]["text"]["text"].startswith("*[critical] m v1* kind1")
    manager = webhook_body("alertmanager", group)
    assert manager[0]["labels"] == {"alertname": "kind1", "model": "m", "version": "1", "severity": "critical",
                                    "service": "mlbus"}
    assert manager[0]["annotations"]["alert_id"] == "a1" and manager[0]["startsAt"] == "2026-11-27T12:00:00Z"
    plain = json.loads(json.dumps(webhook_body("json", group)))
    assert plain["alerts"][1]["alert_id"] == "a2" and plain["summary"].startswith("2 alerts: [critical] m v1 kind1")
    mail = email_message(CONFIG.sinks["mail"], group)
    assert mail["Subject"].startswith("[mlbus critical] 2 alerts") and mail["To"] == "o@x"
    assert "message 2" in mail.get_content()


def test_the_handler_sends_due_groups_and_records_each_attempt():
    now = [T0]
    answers = iter(["HTTPError 503", None])
    sent = []
    notifier = Notifier(parse_config({**RAW, "routes": [{"sinks": ["hook"]}]}), Outbox(),
                        send=lambda sink, group: sent.append([a["alert_id"] for a in group]) or next(answers),
                        clock=lambda: now[0])
    assert notifier(received("mlbus.Alert", alert(1))) == [] and notifier.tick() == []
    now[0] += timedelta(seconds=10)
    assert [e.value["outcome"] for e in notifier.tick()] == ["failed"]
    now[0] += timedelta(seconds=1)
    assert [e.value["outcome"] for e in notifier.tick()] == ["delivered"] and sent == [["a1"], ["a1"]]


def test_repeat_keys_outside_the_dedupe_window_are_forgotten_past_a_bound():
    from services.notifier.decide import SENT_KEPT, parse_config
    config = parse_config({"sinks": {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/", "format": "json"}},
                           "routes": [{"sinks": ["ops"]}], "dedupe_window_s": 60})
    outbox, start = Outbox(), datetime.now(timezone.utc)
    for i in range(SENT_KEPT + 1):                 # one model name per alert, as a hostile sender would
        at = start + timedelta(seconds=i)
        on_alert(outbox, config, {"alert_id": f"a{i}", "kind": "drift", "severity": "warning", "model": f"m{i}",
                                  "version": 1, "message": "x", "raised_at": at, "cause_id": "",
                                  "evidence_json": "{}"}, at)
    assert len(outbox.sent) <= 61
