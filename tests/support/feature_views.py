"""Feature views over the shop's purchases (business.events, kind purchase) for the feature store's tests: one
builder, so each test says only what its view has of its own."""
from __future__ import annotations

from services.domain import views_from_yaml

LAST_AND_SUM = ("{name: last_amount, aggregate: last, field: amount}",
                "{name: spend_1h, aggregate: sum, field: amount, window: 1h}")


def purchases_view(*features: str, name: str = "purchases", entity: str = "customer",
                   event_time: str = "occurred_at", lateness: str = "1h", owner: str = "dana"):
    """A view of `features` (YAML flow mappings) over purchases, read by `entity` at `event_time`, ttl 2 days."""
    lines = "\n".join(f"      - {feature}" for feature in features)
    [view] = views_from_yaml(f"""
views:
  - name: {name}
    entity: {entity}
    source: {{topic: business.events, kind: purchase}}
    event_time: {event_time}
    lateness: {lateness}
    ttl: 2d
    owner: {owner}
    features:
{lines}
""")
    return view
