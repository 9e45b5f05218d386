"""The notifier's edges: a group of alerts as each sink's payload (pure), and sending it (HTTP, SMTP).

- webhook, format json: {"source": "mlbus", "summary", "alerts": [Alert records]}
- webhook, format slack: a Slack incoming-webhook message ({"text": ...} with one line per alert)
- webhook, format alertmanager: the Alertmanager API v2 body (POST /api/v2/alerts): a list of alerts with
  labels (alertname = kind, model, version, severity, service=mlbus) and annotations (summary, alert_id)
- email: a plain-text message through SMTP (STARTTLS and login when the sink says so). STARTTLS verifies the
  server's certificate and name against the system's trust store, or only against the sink's `ca_file` (a
  private CA): a server that cannot prove it is `host` gets neither the login nor the alerts
A send returns None when the sink took it, else why not (a status ≥ 300, a refused connection, a timeout)."""
from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from datetime import datetime, timezone
from email.message import EmailMessage

from .decide import summary

TIMEOUT_S = 10.0


def iso(when) -> str:
    return (when if isinstance(when, datetime) else datetime.fromtimestamp(when / 1000, timezone.utc)) \
        .astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def plain(alert: dict) -> dict:
    return {**alert, "raised_at": iso(alert["raised_at"])}


def webhook_body(form: str, group: list[dict]) -> object:
    if form == "slack":
        return {"text": f"mlbus: {len(group)} alert{'s' if len(group) > 1 else ''}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*[{a['severity']}] "
                            f"{a['model'] or '-'}{' v%s' % a['version'] if a['version'] is not None else ''}* "
                            f"{a['kind']}: {a['message']}"}} for a in group]}
    if form == "alertmanager":
        return [{"labels": {"alertname": a["kind"], "model": a["model"] or "", "version": str(a["version"] or ""),
                            "severity": a["severity"], "service": "mlbus"},
                 "annotations": {"summary": a["message"], "alert_id": a["alert_id"], "cause_id": a["cause_id"]},
                 "startsAt": iso(a["raised_at"])} for a in group]
    return {"source": "mlbus", "summary": summary(group), "alerts": [plain(a) for a in group]}


def email_message(sink: dict, group: list[dict]) -> EmailMessage:
    message = EmailMessage()
    worst = "critical" if any(a["severity"] == "critical" for a in group) else group[0]["severity"]
    subject = " ".join(f"[mlbus {worst}] {summary(group)}".split())      # one line: no CR/LF from an alert
    message["Subject"] = subject[:200]
    message["From"] = sink["from"]
    message["To"] = ", ".join(sink["to"] if isinstance(sink["to"], list) else [sink["to"]])
    message.set_content("\n\n".join(
        f"[{a['severity']}] {a['kind']} — {a['model'] or '-'} v{a['version'] if a['version'] is not None else '-'}\n"
        f"{a['message']}\nraised at {iso(a['raised_at'])}, alert {a['alert_id']}, cause {a['cause_id']}\n"
        f"evidence: {a['evidence_json']}" for a in group))
    return message


def tls_context(sink: dict) -> ssl.SSLContext:
    """Certificates verified and the name checked (ssl's defaults): the system's trust store, or the sink's
    `ca_file` alone when it names one."""
    return ssl.create_default_context(cafile=sink.get("ca_file") or None)


def send(sink: dict, group: list[dict]) -> str | None:
    """Deliver one group to one sink; None when it was taken, else the reason it was not."""
    try:
        if sink["type"] == "email":
            with smtplib.SMTP(sink["host"], int(sink.get("port", 25)), timeout=TIMEOUT_S) as smtp:
                if sink.get("starttls"):
                    smtp.starttls(context=tls_context(sink))
                if sink.get("username"):
                    smtp.login(sink["username"], sink.get("password", ""))
                smtp.send_message(email_message(sink, group))
            return None
        body = json.dumps(webhook_body(sink["format"], group), sort_keys=True).encode()
        request = urllib.request.Request(sink["url"], data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "mlbus-notifier"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:     # noqa: S310 - the config's URL
            return None if response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.reason}"
    except (urllib.error.URLError, OSError, smtplib.SMTPException) as error:
        return f"{type(error).__name__}: {getattr(error, 'reason', error)}"
    except Exception as error:          # noqa: BLE001 - what an alert's content made the message builder refuse
        return f"the alert could not be sent as it is: {type(error).__name__}: {error}"[:500]
