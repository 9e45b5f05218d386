"""Deployments: which versions serve each model's traffic now, and how they got there (pure fold)."""
from __future__ import annotations

from dataclasses import dataclass, field

IN_PROGRESS = ("started", "step")


@dataclass
class Deployments:
    current: dict[str, dict] = field(default_factory=dict)       # model → latest DeploymentChanged
    history: dict[str, list[dict]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)                    # every deployment id with a change

    def apply(self, record: str, value: dict) -> None:
        if record != "mlbus.DeploymentChanged":
            return
        key = f"{value['deployment_id']}/{value['phase']}/{value['step']}"
        if key in self.seen:
            return
        self.seen.add(key)
        self.ids.add(value["deployment_id"])
        self.history.setdefault(value["model"], []).append(value)
        if value["phase"] != "refused":
            self.current[value["model"]] = value

    def answered(self, deployment_id: str) -> bool:
        """Whether any change of this deployment is known (refused ones included)."""
        return deployment_id in self.ids

    def routes(self, model: str) -> list[dict]:
        return self.current.get(model, {}).get("routes", [])

    def champion(self, model: str) -> dict | None:
        """The route that answers when no other variant takes the request."""
        return next((r for r in self.routes(model) if r["variant"] == "champion"), None)

    def in_progress(self) -> list[dict]:
        return [d for d in self.current.values() if d["phase"] in IN_PROGRESS]
