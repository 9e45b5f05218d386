"""A model's monitoring settings: windows, drift thresholds, alerts, drift-triggered retraining, serving SLOs.

They travel in the spec (`monitoring:` block → ModelSpecDefined.monitoring_json); the CLI checks them
when the spec is defined, the drift-watcher reads them. The defaults follow what practitioners use
(Evidently): p < 0.05 for tests, 0.1 for distances, PSI 0.1 warn / 0.2 drift, dataset drift when at
least half of the features drift, tests for references up to 1,000 rows and distances beyond.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from services.bus.edge import content
from services.bus.errors import BadInput


@dataclass(frozen=True)
class Monitoring:
    window_rows: int = 500                 # a window closes after this many requests...
    window_seconds: float = 300.0          # ...or this long after its first request, whichever comes first
    min_rows: int = 30                     # a window due by time with fewer rows stays open
    p_value: float = 0.05                  # KS, chi²: a feature drifts when p < p_value
    distance: float = 0.1                  # normalised Wasserstein, Jensen-Shannon: drift above this
    psi_warn: float = 0.1
    psi_drift: float = 0.2
    small_reference: int = 1000            # references up to this many rows get tests, larger ones distances
    dataset_share: float = 0.5             # the window drifts when this share of the features drift
    alert_alpha: float = 0.05              # feature-drift alert: p < alert_alpha / features (Bonferroni)
    retrain_after: int = 3                 # consecutive drifted windows on the champion → training request
    retrain_cooldown_seconds: float = 3600.0   # at most one drift-triggered training per model in this time
    min_outcomes: int = 30                 # online performance is judged from this many outcomes on
    max_performance_drop: float = 0.1      # alert when accuracy falls (or MAE rises) this far from the holdout
    # Serving SLOs of the champion, judged by the deployer all the time (0: not judged)
    slo_p99_ms: float = 0.0                # the champion's p99 latency over slo_window predictions must stay below
    slo_error_rate: float = 0.0            # ... and its share of failed predictions
    slo_window: int = 200                  # predictions per judgement (tumbling windows)
    slo_rollback: bool = False             # a breach also rolls back to the previous champion


def parse_monitoring(raw: dict | None) -> Monitoring:
    """The spec's monitoring block; unknown keys and values of the wrong kind are refused by name."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise BadInput("monitoring must be a mapping of setting: value")
    known = {f.name: f for f in fields(Monitoring)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BadInput(f"monitoring: unknown settings {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {}         # each checked against its field's kind below
    for name, value in raw.items():
        if known[name].type == "bool":
            if not isinstance(value, bool):
                raise BadInput(f"monitoring.{name} must be true or false, not {value!r}")
            values[name] = value
            continue
        kind = int if known[name].type == "int" else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise BadInput(f"monitoring.{name} must be a number ≥ 0, not {value!r}")
        values[name] = kind(value)
    config = Monitoring(**values)
    if config.window_rows < 2 or config.retrain_after < 1 or not 0 < config.dataset_share <= 1 \
            or config.slo_window < 1:
        raise BadInput("monitoring: window_rows ≥ 2, retrain_after ≥ 1, slo_window ≥ 1 and 0 < dataset_share ≤ 1")
    return config


def monitoring_json(config: Monitoring) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def monitoring_from_json(text: str) -> Monitoring:
    return parse_monitoring(content(text))


class SpecMonitoring:
    """model → its monitoring settings, folded from models.specs (the drift-watcher's windows, the deployer's SLOs).
    Settings that do not parse (a spec that never went through the CLI) leave the model's previous ones."""

    def __init__(self):
        self.monitoring: dict[str, Monitoring] = {}

    def apply(self, record: str, value: dict) -> None:
        if record == "mlbus.ModelSpecDefined":
            try:
                self.monitoring[value["model"]] = monitoring_from_json(value.get("monitoring_json", "{}"))
            except (BadInput, ValueError, TypeError):
                pass

    def of(self, model: str) -> Monitoring:
        return self.monitoring.get(model, Monitoring())
