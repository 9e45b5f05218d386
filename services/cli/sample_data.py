"""Sample datasets, shaped as mlbus batches (an id key column, snake_case features, a string target), so the
platform can be tried without data of one's own: scikit-learn's breast cancer data (numbers only, shipped
offline with scikit-learn), synthetic insurance claims with categories, and synthetic loan applications with a
sensitive attribute, fair or with a planted bias (generated with fixed seeds)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DATASETS = ("breast_cancer", "insurance_claims", "loan_applications", "loan_applications_biased")
REGIONS = ("north", "south", "east", "west")
CHANNELS = ("web", "agent", "phone")
VEHICLES = ("sedan", "suv", "van", "motorbike")
PLANTED_BIAS = 1.5       # loan_applications_biased: group F's log-odds of approval lowered by this


def breast_cancer(rows: int | None = None, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    """Wisconsin breast cancer (569 rows, 30 numeric features, target `diagnosis`: malignant | benign).
    rows > 569 resamples with small Gaussian jitter (2 % of each feature's std); ids start at offset."""
    import numpy as np                                   # loaded here: the CLI starts without them
    from sklearn.datasets import load_breast_cancer
    raw = load_breast_cancer(as_frame=True)
    features = raw.data.rename(columns=lambda c: re.sub(r"\W+", "_", c.strip()).lower())
    labels = raw.target.map({0: "malignant", 1: "benign"})
    rng = np.random.default_rng(seed)
    count = rows or len(features)
    picks = rng.permutation(len(features))[:count] if count <= len(features) else rng.integers(0, len(features), count)
    frame = features.iloc[picks].reset_index(drop=True)
    if count > len(features):
        jitter = rng.normal(0.0, 0.02, size=frame.shape) * features.std().to_numpy()
        frame = (frame + jitter).clip(lower=0.0)
    frame.insert(0, "id", np.arange(offset, offset + count, dtype=np.int64))
    frame["diagnosis"] = labels.iloc[picks].to_numpy()
    return frame


def insurance_claims(rows: int | None = None, seed: int = 0, offset: int = 0,
                     regions: tuple[str, ...] = REGIONS) -> pd.DataFrame:
    """Synthetic motor-insurance claims (default 2,000 rows) with categories: region, sales channel and
    vehicle (text), and four numbers; target `fraud` (yes | no), whose odds depend on both kinds — the phone
    channel and motorbikes raise them, as do a short tenure and a large claim. Generated with a fixed seed;
    `regions` lets a test shift the traffic to regions the training never saw, or to one region."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(seed)
    count = rows or 2000
    frame = pd.DataFrame({
        "id": np.arange(offset, offset + count, dtype=np.int64),
        "age": rng.normal(45, 12, count).clip(18, 90).round(1),
        "tenure_months": rng.gamma(2.0, 24.0, count).round(1),
        "claim_amount": rng.lognormal(7.5, 0.8, count).round(2),
        "prior_claims": rng.poisson(0.6, count).astype(float),
        "region": rng.choice(regions, count),
        "channel": rng.choice(CHANNELS, count, p=[0.5, 0.3, 0.2]),
        "vehicle": rng.choice(VEHICLES, count, p=[0.45, 0.3, 0.15, 0.1])})
    odds = (-1.6 + 1.4 * (frame["channel"] == "phone") + 1.2 * (frame["vehicle"] == "motorbike")
            + 0.5 * (frame["region"] == "south") - 0.02 * frame["tenure_months"]
            + 0.6 * (np.log(frame["claim_amount"]) - 7.5) + 0.4 * frame["prior_claims"])
    frame["fraud"] = np.where(rng.random(count) < 1 / (1 + np.exp(-odds)), "yes", "no")
    return frame


def loan_applications(rows: int | None = None, seed: int = 0, offset: int = 0, bias: float = 0.0) -> pd.DataFrame:
    """Synthetic loan applications (default 2,000 rows): income, debt ratio, years employed, loan amount and
    `sex` (F | M, the contract's sensitive attribute, also a feature); target `approved` (yes | no). Both
    groups have the same distribution of every number; with `bias` > 0 the label is planted against group F
    (its log-odds lowered by `bias`), so a model learns to approve F less often for the same numbers."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(seed)
    count = rows or 2000
    frame = pd.DataFrame({
        "id": np.arange(offset, offset + count, dtype=np.int64),
        "income": rng.gamma(4.0, 12.5, count).round(1),
        "debt_ratio": rng.beta(2.0, 5.0, count).round(3),
        "years_employed": rng.poisson(6.0, count).astype(float),
        "loan_amount": rng.lognormal(3.0, 0.5, count).round(1),
        "sex": rng.choice(("F", "M"), count)})
    odds = (0.04 * (frame["income"] - 50) - 4.0 * (frame["debt_ratio"] - 0.3) + 0.12 * (frame["years_employed"] - 6)
            - 0.02 * (frame["loan_amount"] - 20) - bias * (frame["sex"] == "F"))
    frame["approved"] = np.where(rng.random(count) < 1 / (1 + np.exp(-odds)), "yes", "no")
    return frame


def sample(name: str, rows: int | None = None, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    makers = {"breast_cancer": breast_cancer, "insurance_claims": insurance_claims,
              "loan_applications": loan_applications,
              "loan_applications_biased": lambda *args: loan_applications(*args, bias=PLANTED_BIAS)}
    if name not in makers:
        raise ValueError(f"unknown sample dataset {name!r}; available: {', '.join(DATASETS)}")
    return makers[name](rows, seed, offset)


def shop_purchases(customers: int = 150, days: int = 21, seed: int = 0, start_ms: int = 1_790_000_000_000
                   ) -> tuple[list[dict], pd.DataFrame]:
    """A shop's purchases as business events, and label rows for a feature-view model (issue 36): each customer
    buys at a rate of their own (purchases a day, gamma-distributed), amounts lognormal; each day at noon, each
    customer is a label row of dataset `shop_returns`: `returns` is yes when they buy again within 3 days. The
    events are BusinessEvent values (kind purchase) in time order; times are epoch ms from `start_ms`."""
    import numpy as np
    import pandas as pd
    from datetime import datetime, timezone
    rng = np.random.default_rng(seed)
    day = 86_400_000
    rates = rng.gamma(1.2, 0.5, customers)
    events = []
    times: dict[str, list[int]] = {}
    for c, rate in enumerate(rates):
        customer = f"cust-{c:04d}"
        count = rng.poisson(rate * (days + 3))
        at = np.sort(rng.integers(start_ms, start_ms + (days + 3) * day, count))
        times[customer] = [int(t) for t in at]
        for i, t in enumerate(at):
            amount = float(np.round(rng.lognormal(3.0 + 0.3 * rate, 0.4), 2))
            events.append({"event_id": f"{customer}-{i}", "kind": "purchase", "entity": customer, "source": "shop",
                           "occurred_at": datetime.fromtimestamp(int(t) / 1000, timezone.utc),
                           "fields": {"customer": customer, "amount": amount}})
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    rows = []
    for d in range(1, days):
        noon = start_ms - start_ms % day + d * day + day // 2
        for customer, bought in times.items():
            again = any(noon <= t < noon + 3 * day for t in bought)
            rows.append({"id": len(rows), "customer": customer, "at": noon, "returns": "yes" if again else "no"})
    return events, pd.DataFrame(rows)
