"""The console on a large record: time to first byte and to a rendered page (headless Chromium, Navigation
Timing) of the models screen with 1,000 model versions and of the audit screen over 1,000,000 audit records,
as a logged-in person (goal: p95 < 300 ms). The console runs as its own process, as `mlbus up` starts it."""
from __future__ import annotations

import json
import statistics
import time
import urllib.request
import uuid
from pathlib import Path

from services.bus import Event, Publisher, derive_id
from tests.chaos.harness import Brokers, Stage
from tests.support.browser import CHROMIUM_ARGS, chromium_path, free_port
from tests.support.people import enrol
from tests.support.polling import wait_until

from .audit import append_rate
from .figures import Figure, Runs, absolute

LOADS = 20           # page loads per counted run; each run's p95 is one value of the figure


def publish_versions(stage: Stage, count: int) -> None:
    """`count` registered versions over 50 models (a third approved), as the trainer and registry write them."""
    publisher = Publisher(stage.bus, "bench-registry")
    now = time.time()
    for i in range(count):
        model, version = f"model-{i % 50:02d}", i // 50 + 1
        trained = {"model": model, "version": version, "run_id": f"run-{i}", "request_id": f"req-{i}",
                   "reason": "new-data", "requested_by": "cli:dana", "task": "classification",
                   "estimator": "LogisticRegression", "hyperparameters_json": '{"C": 1.0}', "features": ["a", "b"],
                   "target": "y", "metric": "roc_auc", "metrics": {"roc_auc": 0.9 + (i % 97) / 1000},
                   "cv_metrics": {}, "batches": [{"batch_id": f"b{i}", "dataset": "d", "sha256": "0" * 64,
                                                  "rows": 1000, "uri": "file:///x"}],
                   "code_version": "bench", "git_commit": None, "environment": {}, "seed": 0, "duration_ms": 1,
                   "artifact_uri": "file:///x", "artifact_sha256": "0" * 64, "feature_profile": [],
                   "spec_sha256": "0" * 64, "trained_at": now, "prediction_profile": None}
        publisher.publish(Event("mlbus.ModelTrained", trained, key=model, id=derive_id("bench-trained", i)))
        for kind in ("registered", "approved") if i % 3 == 0 else ("registered",):
            event_id = derive_id("bench-lifecycle", i, kind)
            publisher.publish(Event("mlbus.ModelLifecycle", key=model, id=event_id, value={
                "event_id": event_id, "model": model, "version": version, "kind": kind, "alias": None,
                "actor": "registry" if kind == "registered" else "ana", "reason": "bench", "policy_version": 0,
                "evidence_json": "{}", "cause_id": f"c{i}-{kind}", "occurred_at": now}))
    publisher.flush()


def health(base: str) -> dict:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]


def timed_loads(page, url: str) -> tuple[list[float], list[float]]:
    """(time to first byte, time to the page rendered: load event, charts drawn) in ms, LOADS times."""
    first_byte, rendered = [], []
    for _ in range(LOADS):
        page.goto(url, wait_until="load")
        timing = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                               " return [n.responseStart - n.requestStart, n.loadEventEnd - n.startTime]; }")
        first_byte.append(timing[0])
        rendered.append(timing[1])
    return first_byte, rendered


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    from playwright.sync_api import sync_playwright
    versions, records = (100, 20_000) if quick else (1_000, 1_000_000)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir / "console", MLBUS_AUDIT_HEAD_INTERVAL_S="5")
        with stage.running():
            publish_versions(stage, versions)
            append_rate(stage, records - 3 * versions)          # the auditor appends the rest of the million
            identity = workdir / f"viewer-{uuid.uuid4().hex[:6]}.json"
            enrol(stage.cli, "viewer", ["viewer"], identity)
            port = free_port()
            stage.start("console", "services.console", MLBUS_CONSOLE_PORT=str(port), MLBUS_LOG_LEVEL="warning")
            base = f"http://127.0.0.1:{port}"
            started = time.perf_counter()
            state = wait_until(lambda: (h := health(base)).get("versions") == versions and h.get("head")
                               and (h.get("timeline_read_to") or 0) >= h["head"] and h, 1800,
                               "the console to fold the versions and read the decision timeline", interval=0.5)
            ready_s = time.perf_counter() - started
            figures: dict[str, list[float]] = {}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(base + "/login")
                page.set_input_files("#identity-file", str(identity))        # read in the page, never sent
                page.click("button[type=submit]")
                page.wait_for_url(base + "/")
                for screen, path in (("models", "/models"), ("audit", "/audit")):
                    timed_loads(page, base + path)                          # warm-up
                    for _ in range(counted):
                        first_byte, rendered = timed_loads(page, base + path)
                        figures.setdefault(f"{screen} first byte", []).append(p95(first_byte))
                        figures.setdefault(f"{screen} rendered", []).append(p95(rendered))
                browser.close()
    sizes = {"models": f"{versions:,} versions of 50 models", "audit": f"{state['head']:,} audit records"}
    return [absolute(f"console: {name} p95", Runs(tuple(values)), "ms", "< 300 ms p95",
                     statistics.median(values) < 300,
                     notes=f"{sizes[name.split()[0]]}, {LOADS} loads per run in headless Chromium (Navigation Timing); "
                           f"the console was ready {ready_s:.0f} s after start")
            for name, values in figures.items()]
