"""Alerts that reach people, on the real broker: the notifier delivers critical alerts to a generic JSON webhook,
a Slack-format and an Alertmanager-format webhook (a local HTTP receiver) and by email (a local SMTP server,
aiosmtpd). The receiver is down for the first 30 s — the notifier keeps retrying with back-off, loses nothing,
and once it is back every alert arrives exactly once, in order per model; warnings are routed elsewhere;
every attempt is on `alerts.deliveries`."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml
from aiosmtpd.controller import Controller

from services.bus import Publisher
from services.domain import alert
from tests.support.polling import topic_values, wait_until
from tests.support.processes import free_port, running

DOWN_S = 30


class Receiver(BaseHTTPRequestHandler):
    bodies: dict[str, list] = {}

    def do_POST(self) -> None:          # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.bodies.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):    # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def test_alerts_reach_webhooks_and_email_once_in_order_after_a_receiver_outage(bus, bus_env, tmp_path):
    http_port, smtp_port = free_port(), free_port()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    base = f"http://127.0.0.1:{http_port}"
    config = {"sinks": {"hook": {"type": "webhook", "format": "json", "url": f"{base}/json"},
                        "slack": {"type": "webhook", "format": "slack", "url": f"{base}/slack"},
                        "manager": {"type": "webhook", "format": "alertmanager", "url": f"{base}/api/v2/alerts"},
                        "mail": {"type": "email", "host": "127.0.0.1", "port": smtp_port, "from": "mlbus@test",
                                 "to": ["oncall@test"]}},
              "routes": [{"severity": ["critical"], "sinks": ["hook", "manager", "mail"]},
                         {"severity": ["warning"], "sinks": ["slack"]}],
              "group_window_s": 1, "dedupe_window_s": 0, "retry_initial_s": 1, "retry_max_s": 4}
    (tmp_path / "notifier.yaml").write_text(yaml.safe_dump(config))
    raised = [alert(f"kind-{i}", model, f"{model} alert {i}", f"cause-{i}", datetime.now(timezone.utc),
                    severity="warning" if i == 5 else "critical", version=1)
              for i, model in enumerate(["m1", "m2", "m1", "m2", "m1", "m2"])]
    server = None
    try:
        with running("services.notifier", bus_env, tmp_path / "notifier.log",
                     MLBUS_NOTIFIER_CONFIG=str(tmp_path / "notifier.yaml")) as notifier:
            publisher = Publisher(bus, "shop-app")
            for event in raised:
                publisher.publish(event)
            publisher.flush()
            wait_until(lambda: len(inbox.messages) >= 1, timeout=60, message="the email (its server is up)")
            # the receiver is down: failed attempts are recorded, retried, until they span DOWN_S seconds
            wait_until(lambda: outage_s(bus, "hook") >= DOWN_S, timeout=DOWN_S + 60,
                       message=f"{DOWN_S} s of failed attempts", interval=1.0)
            server = ThreadingHTTPServer(("127.0.0.1", http_port), Receiver)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            critical = {a.value["alert_id"] for a in raised if a.value["severity"] == "critical"}
            wait_until(lambda: delivered(bus, "hook") == delivered(bus, "manager") == critical
                       and len(delivered(bus, "slack")) == 1, timeout=60, message="delivered once the receiver is back")
            assert notifier.poll() is None
    finally:
        smtp.stop()
        if server:
            server.shutdown()

    critical = [a.value["alert_id"] for a in raised if a.value["severity"] == "critical"]      # in order
    received_json = [a["alert_id"] for body in Receiver.bodies["/json"] for a in body["alerts"]]
    assert received_json == critical                                    # each once, in the order raised
    for model in ("m1", "m2"):
        mine = [a for a in critical if a in {r.value["alert_id"] for r in raised if r.value["model"] == model}]
        assert [i for i in received_json if i in mine] == mine
    managed = [a for body in Receiver.bodies["/api/v2/alerts"] for a in body]
    assert [a["annotations"]["alert_id"] for a in managed] == critical
    assert managed[0]["labels"] == {"alertname": "kind-0", "model": "m1", "version": "1", "severity": "critical",
                                    "service": "mlbus"}
    [slack] = Receiver.bodies["/slack"]
    assert slack["blocks"][0]["text"]["text"].startswith("*[warning] m2 v1* kind-5")
    mailed = " ".join(m.get_payload() for m in inbox.messages)
    assert all(f"alert {i}" in mailed for i in range(5)) and "alert 5" not in mailed
    records = [d for d in topic_values(bus, "alerts.deliveries")]
    failed = [d for d in records if d["sink"] == "hook" and d["outcome"] == "failed"]
    assert len(failed) >= 5 and all("Connection" in d["error"] or "refused" in d["error"] for d in failed)


def outage_s(bus, sink: str) -> float:
    failed = [d["attempted_at"] for d in topic_values(bus, "alerts.deliveries")
              if d["sink"] == sink and d["outcome"] == "failed"]
    return (max(failed) - min(failed)).total_seconds() if failed else 0.0


def delivered(bus, sink: str) -> set[str]:
    return {i for d in topic_values(bus, "alerts.deliveries") if d["sink"] == sink and d["outcome"] == "delivered"
            for i in d["alert_ids"]}
