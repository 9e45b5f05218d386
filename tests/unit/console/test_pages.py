"""The console's pages from a view folded in memory (no broker): who may approve and why not, the policy's
evidence, the lineage graph, and the web application itself through Starlette's test client — login with a
challenge signed as the browser signs it, cookies, CSRF, the login rate limit, body limits, sessions ended by
revocation, escaping, and acts signed by the (simulated) browser handed to a fake publisher."""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from starlette.testclient import TestClient

from services.bus.context import Bus
from services.bus.settings import Settings
from services.console import feature_pages, pages
from services.bus.signing import canonical_act, verify_act
from services.console.app import Console
from services.console.login import COOKIE, LOGIN_COOKIE
from services.console.guard import login_message
from services.console.limits import FORM
from services.console.view import ConsoleView
from tests.unit.console.test_guard import person, revoke

NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
MARKUP = '<img src=x onerror="alert(1)">'


def trained(model: str, version: int, requested_by: str = "cli:bo", roc_auc: float = 0.97) -> dict:
    return {"model": model, "version": version, "run_id": f"run-{model}-{version}", "request_id": "r", "reason": "manual",
            "requested_by": requested_by, "task": "classification", "estimator": "LogisticRegression",
            "hyperparameters_json": '{"C": 1.0}', "features": ["a"], "target": "y", "metric": "roc_auc",
            "metrics": {"roc_auc": roc_auc}, "cv_metrics": {}, "batches": [{"batch_id": "b1", "dataset": "d",
            "sha256": "f" * 64, "rows": 10, "uri": "x"}], "code_version": "1", "git_commit": None, "environment": {},
            "seed": 0, "duration_ms": 1, "artifact_uri": "a", "artifact_sha256": "a" * 64, "feature_profile": [],
            "spec_sha256": "0", "trained_at": NOW, "prediction_profile": None}


def lifecycle(model: str, version: int, kind: str, actor: str, reason: str, n: int) -> dict:
    return {"event_id": f"e{n}", "model": model, "version": version, "kind": kind, "alias": None, "actor": actor,
            "reason": reason, "policy_version": 1, "evidence_json": json.dumps({"signer_key": f"key-{actor}"}),
            "cause_id": f"c{n}", "occurred_at": NOW + timedelta(seconds=n)}


def story() -> ConsoleView:
    view = ConsoleView()
    view.apply("mlbus.PromotionPolicyDefined", {"model": "m", "policy_version": 1, "thresholds": {"roc_auc": 0.9},
                                                "metric": "roc_auc", "min_improvement": 0.0, "human_approval": True,
                                                "approvers": ["ana"], "four_eyes": True})
    view.apply("mlbus.ModelTrained", trained("m", 1, "cli:bo", 0.95))
    view.apply("mlbus.ModelLifecycle", lifecycle("m", 1, "registered", "registry", "registered", 1))
    view.apply("mlbus.ModelLifecycle", lifecycle("m", 1, "approved", "ana", "fine", 2))
    view.apply("mlbus.ModelLifecycle", {**lifecycle("m", 1, "promoted", "deployer", "champion", 3), "alias": "champion"})
    view.apply("mlbus.ModelTrained", trained("m", 2, "cli:ana", 0.97))
    view.apply("mlbus.ModelLifecycle", lifecycle("m", 2, "registered", "registry", "registered", 4))
    view.apply("mlbus.ModelLifecycle", lifecycle("m", 2, "approval-refused", "bo", MARKUP, 5))
    view.apply("mlbus.ModelTrained", trained(MARKUP, 1))
    return view


def test_who_may_approve_follows_the_role_and_the_models_policy():
    view = story()
    v2 = view.inventory.version("m", 2)
    assert pages.may_approve(view, v2, "mallory", ("viewer",)) == "mallory has no approver role (roles: viewer)"
    assert pages.may_approve(view, v2, "bo", ("approver",)) == "not an approver: the policy names ana"
    assert pages.may_approve(view, v2, "ana", ("approver",)) == "four-eyes: the approver requested this training"
    assert "not awaiting" in pages.may_approve(view, view.inventory.version("m", 1), "ana", ("approver",))


def test_the_inbox_shows_the_policys_evidence_and_refused_attempts():
    shown = pages.approvals(story(), "carl", ("approver",))
    waiting = {(i["model"], i["version"]): i for i in shown["inbox"]}
    assert set(waiting) == {("m", 2), (MARKUP, 1)}
    evidence = waiting[("m", 2)]["evidence"]
    assert evidence["checks"] == [{"metric": "roc_auc", "value": 0.97, "limit": 0.9, "higher_is_better": True,
                                   "meets": True}]
    assert evidence["champion"]["champion"] == 1 and evidence["champion"]["improvement"] == pytest.approx(0.02)
    assert [e["actor"] for e in shown["refused"]] == ["bo"]


def test_the_lineage_joins_data_run_version_decisions_and_deployments():
    view = story()
    view.apply("mlbus.DeploymentChanged", {"deployment_id": "d1", "model": "m", "strategy": "replace", "phase": "completed",
                                           "routes": [{"version": 1, "variant": "champion", "share": 1.0, "served": True}],
                                           "reason": "", "actor": "deployer", "cause_id": "c", "changed_at": NOW,
                                           "version": 1, "steps": [], "step": 0, "step_interval_s": 0.0,
                                           "evidence_json": "{}"})
    page = pages.version_page(view, "m", 1)
    kinds = [n["kind"] for n in page["lineage"]["nodes"]]
    assert kinds == ["batch", "validation", "run", "version", "decision", "decision", "decision", "deployment"]
    decisions = {n["id"]: n["label"] for n in page["lineage"]["nodes"] if n["kind"] == "decision"}
    deployment = next(n for n in page["lineage"]["nodes"] if n["kind"] == "deployment")
    into_deployment = [e for e in page["lineage"]["edges"] if e["x2"] == deployment["x"]]
    assert len(into_deployment) == 1 and "approved" in decisions.values()     # it follows from the approval
    assert pages.version_page(view, "m", 9) is None


@pytest.fixture
def console(tmp_path):
    sent: list = []
    bus = Bus.from_settings(Settings.from_env({"MLBUS_VAR": str(tmp_path), "MLBUS_BOOTSTRAP": "127.0.0.1:1"}))
    app = Console(bus, publish=sent.append)
    app.view = story()
    people = {name: person(name, roles, app.view.identities)
              for name, roles in (("ana", ("approver",)), ("bo", ("approver", "operator")), ("mallory", ("viewer",)))}
    return app, sent, people


def login_token(client: TestClient) -> str:
    return client.get("/login").text.split('name="login_token" value="')[1].split('"')[0]


def signed_login(client: TestClient, who, token: str | None = None, signer=None) -> dict:
    """What the login page's script posts: the key id, the challenge and its signature, never the key."""
    token = token or login_token(client)
    challenge = client.post("/login/challenge", data={"login_token": token}).json()["challenge"]
    return {"login_token": token, "next": "/approvals", "key_id": who.key_id, "challenge": challenge,
            "signature": (signer or who).sign(login_message(challenge))}


def logged_in(app: Console, who) -> TestClient:
    client = TestClient(app.app(), base_url="http://127.0.0.1")
    done = client.post("/login", data=signed_login(client, who), follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/approvals"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    return client


def csrf_of(page: str) -> str:
    return page.split('name="csrf" value="')[1].split('"')[0]


def test_every_screen_wants_a_login_and_a_login_wants_a_signed_challenge(console):
    app, _, people = console
    client = TestClient(app.app(), base_url="http://127.0.0.1")
    for path in ("/", "/models", "/approvals", "/audit"):
        assert client.get(path, follow_redirects=False).headers["location"].startswith("/login")
    assert client.get("/events").status_code == 401
    stranger = person("eve")
    refused = client.post("/login", data=signed_login(client, stranger))
    assert refused.status_code == 401 and "not on the identities topic" in refused.text
    forged = client.post("/login", data=signed_login(client, people["ana"], signer=people["bo"]))
    assert forged.status_code == 401 and "does not verify" in forged.text
    replayed = signed_login(client, people["ana"])
    assert client.post("/login", data=replayed, follow_redirects=False).status_code == 303
    again = TestClient(app.app(), base_url="http://127.0.0.1")
    again.cookies.set(LOGIN_COOKIE, replayed["login_token"])
    assert again.post("/login", data=replayed).status_code == 401        # a challenge is taken once
    no_token = client.post("/login", data={**signed_login(client, people["ana"]), "login_token": "other"})
    assert no_token.status_code == 403
    assert client.post("/login/challenge", data={"login_token": "other"}).status_code == 403


def test_logins_are_rate_limited_per_client(console):
    app, _, people = console
    client = TestClient(app.app(), base_url="http://127.0.0.1")
    token = login_token(client)
    codes = [client.post("/login", data={**signed_login(client, people["ana"], token), "signature": "bad"}).status_code
             for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]


def test_no_route_takes_a_file_and_bodies_are_capped_before_they_are_read(console):
    app, _, people = console
    client = TestClient(app.app(), base_url="http://127.0.0.1")
    token = login_token(client)
    upload = client.post("/login", data={"login_token": token}, files={"identity": ("ana.json", b"{}", "x")})
    assert upload.status_code == 415 and "no file" in upload.text
    big = client.post("/login", content=b"a=" + b"x" * 20_000, headers={"content-type": FORM})
    assert big.status_code == 413

    def chunks():                    # no Content-Length: counted while it streams
        for _ in range(40):
            yield b"x" * 1024
    assert client.post("/login", content=chunks(), headers={"content-type": FORM}).status_code == 413
    assert logged_in(app, people["ana"]).get("/approvals").status_code == 200


def sign_prepared(client: TestClient, who, path: str, form: dict, csrf: str):
    """The page's script: the console prepares the act, the browser signs its bytes and sends the signature."""
    prepared = client.post(path, data={**form, "csrf": csrf})
    assert prepared.status_code == 200, prepared.text
    answer = prepared.json()
    assert answer["signer_key"] == who.key_id and set(answer) == {"act", "signer_key", "record", "bytes"}
    signature = who.sign(base64.b64decode(answer["bytes"]))
    return answer, client.post(path, data={"csrf": csrf, "act": answer["act"], "signature": signature})


def test_an_approval_is_signed_in_the_browser_verified_and_sent_by_the_console(console):
    app, sent, people = console
    client = logged_in(app, people["ana"])
    page = client.get("/approvals")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    form = {"model": "m", "version": "2", "decision": "approve", "reason": "ok"}
    assert client.post("/approvals", data=form).status_code == 403                      # no token
    assert client.post("/approvals", data={**form, "csrf": "forged"}).status_code == 403
    refused = client.post("/approvals", data={**form, "csrf": csrf_of(page.text)})      # four-eyes: ana asked for v2
    assert refused.status_code == 403 and "four-eyes" in refused.json()["refused"] and sent == []
    answer, done = sign_prepared(client, people["ana"], "/approvals", {**form, "version": "1", "model": MARKUP},
                                 csrf_of(page.text))
    assert done.status_code == 200 and "signed by ana in the browser" in done.text and len(sent) == 1
    act = sent[0]
    assert act.record == "mlbus.ApprovalSubmitted" and act.key == MARKUP and act.subject == f"{MARKUP}@1"
    assert {k: act.value[k] for k in ("model", "version", "decision", "reason", "actor", "signer", "signer_key",
                                      "artifact_sha256")} == {
        "model": MARKUP, "version": 1, "decision": "approve", "reason": "ok", "actor": "ana", "signer": "ana",
        "signer_key": people["ana"].key_id, "artifact_sha256": "a" * 64}
    assert canonical_act(act.record, act.value) == base64.b64decode(answer["bytes"])
    assert not verify_act(app.view.identities, act.record, act.value, int(time.time() * 1000), ("approver",)).refusal
    again = client.post("/approvals", data={"csrf": csrf_of(page.text), "act": answer["act"],
                                            "signature": act.value["signature"]})
    assert again.status_code == 403 and "sent already" in again.text and len(sent) == 1      # an act is sent once


def test_a_bad_signature_or_another_sessions_act_is_refused_and_nothing_is_sent(console):
    app, sent, people = console
    ana, bo = logged_in(app, people["ana"]), logged_in(app, people["bo"])
    csrf = csrf_of(ana.get("/approvals").text)
    form = {"model": MARKUP, "version": "1", "decision": "reject", "reason": "no", "csrf": csrf}
    forged = ana.post("/approvals", data={"csrf": csrf, "act": ana.post("/approvals", data=form).json()["act"],
                                          "signature": people["bo"].sign(b"anything")})
    assert forged.status_code == 403 and "does not verify" in forged.text
    answer = ana.post("/approvals", data=form).json()
    bo_csrf = csrf_of(bo.get("/approvals").text)
    stolen = bo.post("/approvals", data={"csrf": bo_csrf, "act": answer["act"],
                                         "signature": people["bo"].sign(base64.b64decode(answer["bytes"]))})
    assert stolen.status_code == 403 and "unknown" in stolen.text and sent == []


def test_a_deployment_request_names_the_versions_artifact_and_a_rollback_none(console):
    app, sent, people = console
    client = logged_in(app, people["bo"])
    csrf = csrf_of(client.get("/deployments").text)
    _, done = sign_prepared(client, people["bo"], "/deployments",
                            {"action": "deploy", "model": "m", "version": "1", "strategy": "canary"}, csrf)
    assert done.status_code == 200 and "requested by bo" in done.text
    _, done = sign_prepared(client, people["bo"], "/deployments", {"action": "rollback", "model": "m"}, csrf)
    deploy, rollback = (event.value for event in sent)
    assert (deploy["version"], deploy["artifact_sha256"], deploy["steps"]) == (1, "a" * 64, [10, 25, 50, 100])
    assert (rollback["version"], rollback["artifact_sha256"], rollback["signer"]) == (None, None, "bo")


def test_a_revoked_keys_session_ends_on_its_next_request(console):
    app, _, people = console
    client = logged_in(app, people["ana"])
    assert client.get("/approvals").status_code == 200
    revoke(people["ana"], int(time.time() * 1000) - 1)
    ended = client.get("/approvals", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
    assert "your session ended: key" in client.get(ended.headers["location"]).text
    assert "revoked" in client.get("/login").text                          # said until a new login
    live = client.get("/approvals", headers={"HX-Request": "true"}, follow_redirects=False)
    assert live.headers["HX-Redirect"].startswith("/login")                # a live refresh leaves the page too
    assert client.get("/events").status_code == 401


def test_a_viewer_sees_why_and_an_approver_outside_the_policy_too(console):
    app, sent, people = console
    assert "mallory has no approver role" in logged_in(app, people["mallory"]).get("/approvals").text
    page = logged_in(app, people["bo"]).get("/approvals").text
    assert "not an approver: the policy names ana" in page
    assert logged_in(app, people["bo"]).post("/deployments", data={"action": "rollback", "model": "m",
                                                                    "csrf": "x"}).status_code == 403


def test_values_from_the_bus_are_text_never_markup(console):
    app, _, people = console
    client = logged_in(app, people["ana"])
    for path in ("/models", "/approvals", "/"):
        page = client.get(path).text
        assert MARKUP not in page, path
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in client.get("/models").text
    assert client.get("/models/m/1").status_code == 200 and client.get("/models/m/7").status_code == 404


def test_logout_needs_the_token_and_ends_the_session(console):
    app, _, people = console
    client = logged_in(app, people["ana"])
    page = client.get("/approvals").text
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False).status_code == 303
    assert client.cookies.get(COOKIE) is None or app.sessions.get(client.cookies.get(COOKIE)) is None


def drift_report(window: int, version: int, statistic: float) -> dict:
    return {"report_id": f"r{window}", "model": "m", "version": version, "window_id": f"w{window}",
            "window_start": NOW, "window_end": NOW + timedelta(minutes=window), "rows": 100, "drift_share": 0.5,
            "dataset_drift": True, "created_at": NOW, "performance": [], "alerting": [], "champion": True,
            "prediction_drift": None,
            "features": [{"feature": "a", "method": "ks", "statistic": statistic, "threshold": 0.05, "p_value": 0.01,
                          "drifted": True, "level": "drift", "bins": ["< 1", "≥ 1"], "reference": [0.5, 0.5],
                          "current": [0.1, 0.9]}]}


def test_monitoring_draws_the_statistic_over_windows_and_the_two_distributions():
    view = story()
    for window, statistic in enumerate((0.01, 0.2, 0.4)):
        view.apply("mlbus.DriftReport", drift_report(window, 1, statistic))
    shown = pages.monitoring(view, "m", None)
    assert shown["feature"] == "a" and [p["statistic"] for p in shown["chart"]["data"]["values"]] == [0.01, 0.2, 0.4]
    bars = shown["distribution"]["data"]["values"]
    assert shown["distribution"]["mark"] == "bar" and len(bars) == 4
    assert {(b["bin"], b["data"], b["share"]) for b in bars} >= {("≥ 1", "this window", 0.9),
                                                                ("≥ 1", "training (reference)", 0.5)}
    old = drift_report(9, 1, 0.3)
    del old["features"][0]["bins"]                 # a report written before the distributions were carried
    assert pages.distribution_chart(old["features"][0]) is None


def test_a_steps_evidence_becomes_one_row_per_variant():
    table = pages.gates({"canary": {"count": 38, "errors": 0, "p99_ms": 66.5}, "champion": {"count": 362, "errors": 1}})
    assert table["columns"] == ["count", "errors", "p99_ms"]
    assert table["rows"][0] == {"variant": "canary", "count": 38, "errors": 0, "p99_ms": 66.5}
    assert pages.gates({}) is None and pages.gates({"reason": "text"}) is None


class Explainer:
    """audit.log's answers, in memory: a batch scoring by its id, nothing else."""

    def __call__(self, wanted: str) -> dict | None:
        if wanted != "s-1":
            return None
        return {"scoring_id": "s-1", "data": [], "decisions": [], "batch_scoring": {
            "model": MARKUP, "version": 1, "input_rows": 300, "signer": "dana", "requested_by": "dana", "at": NOW,
            "audit_sequence": 42, "input_batch_id": None, "input_uri": "file:///in.csv", "input_sha256": "a" * 64,
            "output_uri": "file:///out.parquet", "output_sha256": "b" * 64, "output_rows": 300,
            "artifact_sha256": "c" * 64, "cpu_seconds": 0.11}}

    def timeline(self) -> list:
        return []


def test_the_audit_search_explains_a_batch_scoring_and_says_when_nothing_matches(console):
    app, _, people = console
    app.explainer = Explainer()
    client = logged_in(app, people["ana"])
    found = client.get("/audit", params={"request_id": "s-1"}).text
    assert "300 rows scored offline" in found and "for dana" in found and "0.11 CPU s" in found
    assert MARKUP not in found                                         # the model's name is text here too
    assert "holds no served prediction for request nope" in client.get("/audit", params={"request_id": "nope"}).text


def test_the_version_page_shows_fairness_per_group_importances_and_ensemble_members(console):
    from services.domain.fairness import group_fairness
    app, _, people = console
    entry = app.view.inventory.version("m", 1)
    report = group_fairness(["yes", "no"] * 40, ["yes"] * 80, ["F", "M"] * 40, "classification", "yes")
    entry.trained.update(fairness_json=json.dumps({"sex": report}), importances={"a": 0.125, "b": 0.5},
                         members=[{"model": "lr", "version": 3, "artifact_sha256": "b" * 64, "weight": 2.0}])
    page = logged_in(app, people["ana"]).get("/models/m/1").text
    assert "groups of ≥ 30 holdout rows judged: F, M" in page and "demographic parity difference <b>0.000</b>" in page
    assert "b 0.5000, a 0.1250" in page
    assert '<a href="/models/lr/3">lr v3</a>' in page and "bbbbbbbbbbbbbbbb…" in page


def feature_story(view: ConsoleView) -> tuple:
    """A view defined (with markup in its description), its online values, a model version trained on it, a drift
    report and a skew alert on it, and a definition of it that does not parse."""
    from services.adapters.feature_store import value_record, views_record
    from services.domain.features_monitoring import view_subject
    from services.domain.features_views import parse_views
    from services.domain.features_windows import FeatureValue
    [defined] = parse_views({"views": [{"name": "purchases", "entity": "customer_id", "ttl": "1d", "owner": "ana",
                                        "source": {"topic": "business.events", "kind": "purchase"},
                                        "description": MARKUP, "features": [
                                            {"name": "spend_1h", "aggregate": "sum", "field": "amount", "window": "1h"},
                                            {"name": "last_amount", "aggregate": "last", "field": "amount"}]}]})
    view.apply("mlbus.FeatureViewDefined", views_record(defined, "cli:dana", NOW))
    broken = {**views_record(defined, "cli:dana", NOW), "definition_json": '{"name": "purchases", "ttl_ms": -1}',
              "version": "b" * 64}
    view.apply("mlbus.FeatureViewDefined", broken)
    newest_ms = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
    for i, feature in enumerate(("spend_1h", "last_amount", "spend_1h")):
        value = FeatureValue("purchases", defined.version, feature, f"c{i}", newest_ms - i * 60_000, 1.5, None, ())
        view.apply("mlbus.FeatureValue", value_record(value, NOW), at_ms=i)
    used = {**trained("churn", 1), "feature_views_json": json.dumps({"views": {"purchases": defined.version},
                                                                     "entity": "customer_id", "time": "at"})}
    view.apply("mlbus.ModelTrained", used)
    subject = view_subject("purchases", defined.version)
    view.apply("mlbus.DriftReport", {**drift_report(1, 0, 0.3), "model": subject, "window_id": f"{subject}/0"})
    view.apply("mlbus.Alert", {"alert_id": "a1", "kind": "feature-skew", "severity": "critical", "model": subject,
                               "version": None, "message": "2 of 9 online values differ", "evidence_json": "{}",
                               "cause_id": "c", "raised_at": NOW})
    return defined, subject


def test_a_feature_views_page_shows_its_definition_freshness_lag_drift_skew_and_models():
    view = story()
    defined, subject = feature_story(view)
    services = [{"service": "featurizer", "state": "running", "lag_by_topic": {"business.events": 42},
                 "lag_source": "metrics"}]
    page = feature_pages.feature_view(view, "purchases", services, int(NOW.timestamp() * 1000))
    [version] = page["versions"]
    assert version["version"] == defined.version and version["defined_by"] == "cli:dana"
    assert version["fresh"]["age_ms"] == 5 * 60_000 and version["fresh"]["count"] == 3
    assert {f["name"]: f["age_ms"] for f in version["features"]} == {"last_amount": 6 * 60_000,
                                                                     "spend_1h": 5 * 60_000}
    assert version["lag"] == {"topic": "business.events", "lag": 42, "source": "metrics"}
    assert version["latest"]["model"] == subject and version["alerts"][0]["kind"] == "feature-skew"
    assert [(m["model"], m["version"]) for m in version["models"]] == [("churn", 1)]
    assert "must be" in page["refused"][0]["reason"] and page["refused"][0]["version"] == "b" * 64
    assert feature_pages.feature_view(view, "nothing", services, 0) is None
    assert feature_pages.feature_view(view, "purchases", [], 0)["versions"][0]["lag"] is None
    [row] = feature_pages.features(view, services, int(NOW.timestamp() * 1000))
    assert (row["view"], row["versions"], row["models"], row["refused"]) == ("purchases", 1, 1, 1)
    assert pages.as_age(850) == "850 ms" and pages.as_age(42_000) == "42 s" and pages.as_age(5 * 60_000) == "5 min"


def test_online_values_tell_the_pages_at_most_every_few_seconds_and_a_flood_of_views_is_bounded():
    from services.console.view import MAX_VIEW_VERSIONS, VALUES_SAID_EVERY_MS
    view = ConsoleView()
    said = []
    view.listeners.append(said.append)
    value = {"view": "v", "version": "a" * 64, "feature": "f", "entity": "e", "event_time": NOW, "value": 1.0,
             "window_start": None, "sources": [], "computed_at": NOW}
    for at_ms in (VALUES_SAID_EVERY_MS, VALUES_SAID_EVERY_MS + 1, 2 * VALUES_SAID_EVERY_MS):
        view.apply("mlbus.FeatureValue", value, at_ms=at_ms)
    assert len(said) == 2 and view.feature_values[("v", "a" * 64)]["values"] == 3
    for i in range(MAX_VIEW_VERSIONS + 5):
        view.apply("mlbus.FeatureValue", {**value, "view": f"v{i}"}, at_ms=0)
    assert len(view.feature_values) == MAX_VIEW_VERSIONS


def test_the_features_screens_are_linked_rendered_and_escape_what_a_definition_holds(console):
    app, _, people = console
    feature_story(app.view)
    app.services = [{"service": "featurizer", "state": "running", "lag_by_topic": {"business.events": 7},
                     "lag_source": "committed"}]
    client = logged_in(app, people["mallory"])
    listing = client.get("/features").text
    assert 'href="/features"' in listing and 'href="/features/purchases"' in listing
    page = client.get("/features/purchases").text
    assert MARKUP not in page and "&lt;img src=x" in page
    for shown in ("cli:dana", "spend_1h", "3 values read", "messages behind on business.events", "feature-skew",
                  "churn", "does not parse"):
        assert shown in page, shown
    assert client.get("/features/nothing").status_code == 404
    assert client.get("/features/%3Cscript%3E").status_code == 404


def test_a_value_dated_ahead_of_the_clock_is_counted_but_never_shown_as_the_views_freshness():
    """The class of features.online readers that keep the newest time: the console's freshness too (a value dated
    9999 would show the view fresh until then, whatever the featurizer does)."""
    view = ConsoleView()
    value = {"view": "v", "version": "a" * 64, "feature": "f", "entity": "e", "event_time": NOW, "value": 1.0,
             "window_start": None, "sources": [], "computed_at": NOW}
    far = datetime(9999, 12, 31, tzinfo=timezone.utc)
    for event_time in (NOW, far, datetime.now(timezone.utc) + timedelta(days=8)):     # past any view's lateness
        view.apply("mlbus.FeatureValue", {**value, "event_time": event_time}, at_ms=0)
    held = view.feature_values[("v", "a" * 64)]
    assert held["values"] == 3 and held["event_time"] == NOW and held["features"] == {"f": NOW}
