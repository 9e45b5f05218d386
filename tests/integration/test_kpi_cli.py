"""KPI correlation and drift status through the real CLI on the real broker: a challenger with a known
+5 % conversion effect is recovered inside its interval; a change without effect is not significant."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np

from services.bus import Event, Publisher, derive_id
from tests.support.browser import screens_as
from services.bus.identity import Identity
from tests.support.drift import NOW, publish_version

MODEL = "shop_model"
START = NOW + timedelta(hours=1)           # v1 is deployed at NOW by publish_version


def at(minute: float) -> datetime:
    return START + timedelta(minutes=minute)


def publish_kpis(publisher: Publisher) -> None:
    """v1 alone, then v2 as challenger at 50 % converting 5 % better, then v2 alone with the same rate."""
    rng = np.random.default_rng(2026)
    for version, minute, routes in [(2, 120, [(1, "champion", 0.5), (2, "challenger", 0.5)]),
                                    (2, 240, [(2, "champion", 1.0)])]:
        publisher.publish(Event("mlbus.DeploymentChanged", key=MODEL, id=derive_id(MODEL, minute), value={
            "deployment_id": f"d{minute}", "model": MODEL, "strategy": "champion-challenger", "phase": "completed",
            "routes": [{"version": v, "variant": n, "share": s, "served": True} for v, n, s in routes],
            "reason": "test", "actor": "test", "cause_id": "c", "changed_at": at(minute), "version": version}))
    observations = [(m, 0.100, {}) for m in range(2, 120, 2)]
    observations += [(m, 0.100, {"variant": "champion"}) for m in range(121, 240)]
    observations += [(m, 0.105, {"variant": "challenger"}) for m in range(121, 240)]
    observations += [(m, 0.100, {}) for m in range(242, 360, 2)]        # v1 → v2 whole-traffic: no effect
    for i, (minute, rate, dims) in enumerate(observations):
        publisher.publish(Event("mlbus.KpiObserved", key="conversion", id=derive_id("kpi", i), value={
            "kpi_id": derive_id("kpi", i), "name": "conversion", "value": float(rng.normal(rate, 0.006)),
            "window_start": at(minute - 1), "window_end": at(minute), "dimensions": {**dims, "model": MODEL},
            "source": "shop", "observed_at": at(minute)}))
    publisher.flush()


def test_kpi_report_recovers_a_known_challenger_effect_and_no_effect_where_there_is_none(bus, bus_env, cli, tmp_path):
    publisher = Publisher(bus, "shop-app")
    publish_version(publisher, MODEL, 1, "{}", Identity.load(cli.identity("dana")))
    publish_kpis(publisher)
    published = cli("kpi", "publish", "conversion", "0.1", "--dim", f"model={MODEL}", "--dim", "segment=eu",
                    "--at", at(400).isoformat(), person="shop")
    assert published.returncode == 0, published.stderr
    assert cli("kpi", "publish", "conversion", "x", person="shop").returncode == 2
    assert "key=value" in cli("kpi", "publish", "conversion", "1", "--dim", "novalue", person="shop").stderr

    result = cli("kpi", "report", MODEL, "--kpi", "conversion", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["kpis"]["conversion"]
    [variant] = report["by_variant"]
    assert variant["label"] == "challenger (v2) vs champion (v1)" and variant["significant"]
    assert variant["ci_low"] <= 0.005 <= variant["ci_high"]
    [change] = report["before_after"]
    assert change["label"] == "v1 → v2" and not change["significant"]
    assert change["ci_low"] <= 0 <= change["ci_high"]
    table = cli("kpi", "report", MODEL)
    assert table.returncode == 0 and "challenger (v2) vs champion (v1)" in table.stdout
    print(f"challenger effect {variant['difference']:+.4f} [{variant['ci_low']:+.4f}, {variant['ci_high']:+.4f}] "
          f"p={variant['p_value']:.2g}; v1→v2 whole traffic {change['difference']:+.4f} "
          f"[{change['ci_low']:+.4f}, {change['ci_high']:+.4f}] p={change['p_value']:.2g}")
    shown = screens_as(bus_env, cli.identity("mallory"), tmp_path / "console.log",
                       {"kpis": f"/kpis?model={MODEL}"})["kpis"]
    assert "challenger (v2) vs champion (v1)" in shown and "v1 → v2" in shown      # the console shows the same
    assert f"{variant['difference']:.4f}" in shown
    status = cli("drift", "status", MODEL)
    assert status.returncode == 0 and "no drift reports yet" in status.stderr
