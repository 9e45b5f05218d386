"""The console in headless Chromium against the real broker and services: people log in with their identity
files, read and used in the browser only (a challenge signed with WebCrypto Ed25519; no request the browser
sends holds the private key), ana approves a pending version and the registry's decision appears without a
reload, bo (an approver, but not one this model's policy names) is told why he cannot, a viewer is told she
has no approver role, an operator rolls back a canary from the page, markup in a reason stays text, a form
without its CSRF token is refused, every screen renders the data with no console error (screenshots under
var/), and a revoked person's session ends at their next click. Bound beyond loopback, the console speaks
HTTPS only, with a certificate from the local CA."""
from __future__ import annotations

import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from services.bus.settings import PROJECT_ROOT
from services.adapters import publish_batch
from tests.support.browser import SHOTS, Visitor, browser, console_running
from tests.support.datasets import good, write
from tests.support.polling import topic_values, wait_until
from tests.support.processes import free_port, running, stop

MODEL = "breast_cancer_lr"
SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
POLICY = f"model: {MODEL}\nmetric: roc_auc\nmin_improvement: -1.0\nhuman_approval: true\napprovers: [ana]\nfour_eyes: true\n"
MARKUP = '<img src=x onerror="document.body.dataset.pwned=1">'
SCREENS = {"overview": "/", "models": "/models", "version": f"/models/{MODEL}/2", "experiments": "/experiments",
           "approvals": "/approvals", "deployments": "/deployments", "monitoring": "/monitoring", "kpis": "/kpis",
           "audit": "/audit"}


def lifecycle(bus, kind: str) -> list[dict]:
    return [d for d in topic_values(bus, "models.lifecycle") if d["kind"] == kind]


def phases(bus) -> list[tuple[int | None, str]]:
    return [(d["version"], d["phase"]) for d in topic_values(bus, "deployments")]


@pytest.fixture
def expect():
    from playwright.sync_api import expect as playwright_expect
    playwright_expect.set_options(timeout=90_000)       # polls until the condition holds or the deadline
    return playwright_expect


def test_people_look_and_decide_in_the_console(bus, bus_env, cli, tmp_path, expect):
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    people = {name: cli.identity(name) for name in ("ana", "bo", "olga", "mallory")}
    with running("services.validator", bus_env), running("services.trainer", bus_env), \
            running("services.registry", bus_env, tmp_path / "registry.log"), \
            running("services.deployer", bus_env, tmp_path / "deployer.log", MLBUS_CANARY_INTERVAL_S="900"), \
            running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_HEAD_INTERVAL_S="1"), \
            console_running(bus_env, tmp_path / "console.log") as base, browser() as chromium:
        publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
        wait_until(lambda: lifecycle(bus, "registered"), timeout=180, message="v1 registered")

        # ana approves v1 on the page; the registry's decision arrives live, without a reload
        ana = Visitor(chromium, base, SHOTS).login(people["ana"])
        page = ana.open("/approvals")
        article = page.locator(f"#approval-{MODEL}-1")
        article.locator("input[name=reason]").fill("holdout and CV metrics reviewed")
        article.locator("button[value=approve]").click()
        expect(page.locator("p.notice")).to_contain_text("signed by ana in the browser")
        page.evaluate("window.loadedOnce = true")        # gone if the page were reloaded
        expect(page.locator("tr.decision").first).to_contain_text("approved", timeout=60_000)
        expect(page.locator("tr.decision").first).to_contain_text("ana")
        assert page.evaluate("window.loadedOnce") is True
        wait_until(lambda: (1, "completed") in phases(bus), timeout=60, message="v1 deployed")

        # bo asked for v2: an approver by role, but the policy names only ana, and four-eyes — the page says why
        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0
        wait_until(lambda: len(lifecycle(bus, "registered")) == 2, timeout=60, message="v2 registered")
        bo = Visitor(chromium, base, SHOTS).login(people["bo"])
        cannot = bo.open("/approvals").locator(f"#approval-{MODEL}-2 .cannot")
        expect(cannot).to_contain_text("not an approver: the policy names ana")
        assert bo.page.locator(f"#approval-{MODEL}-2 form").count() == 0
        mallory = Visitor(chromium, base, SHOTS).login(people["mallory"])
        expect(mallory.open("/approvals").locator(f"#approval-{MODEL}-2 .cannot")).to_contain_text("no approver role")

        # a form posted without its CSRF token is refused, and so is a post with no session
        page = ana.open("/approvals")
        forged = page.request.post(base + "/approvals", form={"model": MODEL, "version": "2", "decision": "approve",
                                                               "reason": "no token"})
        assert forged.status == 403 and "CSRF" in forged.text()
        anonymous = ana.context.browser.new_context().request.post(
            base + "/approvals", form={"model": MODEL, "version": "2", "decision": "approve", "reason": "x"})
        assert anonymous.status == 403
        assert not [a for a in topic_values(bus, "approvals") if a["reason"] in ("no token", "x")]
        signed = [a for a in topic_values(bus, "approvals") if a["reason"] == "holdout and CV metrics reviewed"]
        assert signed[0]["signer"] == "ana" and signed[0]["artifact_sha256"] and signed[0]["signature"]

        # ana approves v2 with markup as her reason: it is shown as text, never run
        article = page.locator(f"#approval-{MODEL}-2")
        article.locator("input[name=reason]").fill(MARKUP)
        article.locator("button[value=approve]").click()
        expect(page.locator("tr.decision").first).to_contain_text(MARKUP, timeout=60_000)
        assert page.locator("img[src=x]").count() == 0
        assert page.evaluate("document.body.dataset.pwned") is None

        # v2 goes out as a canary (steps of 15 minutes); olga, an operator, rolls it back from the page
        wait_until(lambda: (2, "started") in phases(bus), timeout=60, message="the canary of v2")
        olga = Visitor(chromium, base, SHOTS).login(people["olga"])
        page = olga.open("/deployments")
        expect(page.locator(f"section#{MODEL} b.phase")).to_have_text("started")
        page.locator(f"section#{MODEL} form:has(input[value=rollback]) input[name=reason]").fill("p99 looks high")
        page.locator(f"section#{MODEL} button.danger").click()
        expect(page.locator(f"section#{MODEL} b.phase")).to_have_text("rolled-back", timeout=60_000)
        rolled = [d for d in topic_values(bus, "deployments") if d["phase"] == "rolled-back"]
        assert rolled and rolled[-1]["actor"] == "olga" and "p99 looks high" in rolled[-1]["reason"]
        assert "Only operators" in ana.open("/deployments").inner_text("main")     # ana may not

        # every screen renders the story's data, with no console error
        for name, path in SCREENS.items():
            shown = ana.open(path, shot=name)
            assert shown.locator("h1").count() == 1, name
        text = {name: ana.open(path).inner_text("main") for name, path in SCREENS.items()}
        assert "breast_cancer_lr" in text["overview"] and "v1 champion 100%" in text["overview"]
        assert "rolled-back" in text["deployments"] and "olga" in text["deployments"]
        assert "v2" in text["models"] and "approved" in text["models"]
        assert "Lineage" in text["version"] and "approved" in text["version"]
        assert ana.open(SCREENS["version"]).locator("svg.lineage g.node").count() >= 5   # batch … deployment
        assert "not an approver: the policy names ana" in text["approvals"] or "four-eyes" in text["approvals"] \
            or "Nothing waits" in text["approvals"]
        assert "LogisticRegression" in text["experiments"]
        assert "ApprovalSubmitted" in text["audit"] or "approved" in text["audit"]
        for visitor in (ana, bo, mallory, olga):
            assert visitor.errors == [], visitor.errors
        for name, visitor in (("ana", ana), ("bo", bo), ("mallory", mallory), ("olga", olga)):
            assert visitor.sent and visitor.leaked(people[name]) == [], f"{name}'s private key was sent"

        # mallory's key is revoked: her open session ends at her next click, and says why
        assert cli("people", "revoke", "mallory").returncode == 0
        wait_until(lambda: "/login" in mallory.open("/models").url, timeout=30, message="mallory's session to end")
        expect(mallory.page.locator("p.error:not([hidden])")).to_contain_text("your session ended")
        expect(mallory.page.locator("p.error:not([hidden])")).to_contain_text("was revoked")


def test_beyond_loopback_the_console_speaks_https_from_the_local_ca_only(bus_env, tmp_path):
    port, ca = free_port(), Path(bus_env["MLBUS_CREDENTIALS_DIR"]).parent / "tls" / "ca.pem"
    trusted = ssl.create_default_context(cafile=str(ca))
    with open(tmp_path / "console.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.console", "--host", "0.0.0.0", "--port",
                                    str(port)], cwd=PROJECT_ROOT, env=bus_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            assert process.poll() is None, (tmp_path / "console.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=trusted) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(answers, timeout=90, message="the console over https")
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()     # no plain HTTP
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):       # not any certificate
            urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5,
                                   context=ssl.create_default_context())
        assert "https://0.0.0.0" in (tmp_path / "console.log").read_text()
    finally:
        stop(process)
