"""The service's feature vector, computed in Python for training.

Mirrors crates/domain/src/features.rs (schema in feature_schema.json). The Rust test
`crates/model/tests/feature_parity.rs` replays fixtures/features.json through the service's own
code and checks every value this module produced, so the two cannot drift apart silently.
"""

import bisect
import json
import math
from datetime import datetime
from pathlib import Path

SCHEMA = json.loads((Path(__file__).parent / "feature_schema.json").read_text())
NAMES = SCHEMA["names"]
WINDOWS_HOURS = (3, 6, 12, 24)
ONLINE_CHANNELS = {"online", "web", "ecommerce", "mobile"}


def parse_time(text):
    """An RFC 3339 timestamp with its own offset (a trailing Z is UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class History:
    """Each customer's recorded (time, amount), like the store: a retry is not counted twice."""

    def __init__(self):
        self.by_customer = {}
        self.seen = set()

    def record(self, tx):
        """Records `tx` and returns the window statistics at its time: [(count, sum)] per window.

        Window W of a transaction at t covers the customer's transactions in (t - W, t], itself
        included (the window rule of crates/domain/src/window.rs).
        """
        at = parse_time(tx["timestamp"]).timestamp()
        events = self.by_customer.setdefault(tx["customer_id"], [])
        key = (tx["customer_id"], tx["transaction_id"])
        if key not in self.seen:
            self.seen.add(key)
            bisect.insort(events, (at, tx["amount"]))
        stats = []
        hi = bisect.bisect_right(events, (at, math.inf))
        for hours in WINDOWS_HOURS:
            lo = bisect.bisect_right(events, (at - hours * 3600, math.inf))
            window = events[lo:hi]
            stats.append((len(window), sum(a for _, a in window)))
        return stats


def vector(tx, stats):
    """The feature vector of `tx` given its window statistics, in NAMES order."""
    amount = tx["amount"]
    at = parse_time(tx["timestamp"])
    flag = lambda name: 1.0 if tx.get(name) else 0.0
    risk = lambda name: float("nan") if tx.get(name) is None else float(tx[name])
    averages = [s / c if c else 0.0 for c, s in stats]
    channel = tx["channel"].lower()
    v = {
        "amount_log1p": math.log1p(amount),
        "amount_to_avg_24h": amount / averages[3] if averages[3] > 0 else 1.0,
        "hour_of_day": float(at.hour),
        "is_night": 1.0 if at.hour < 6 else 0.0,
        "merchant_risk_score": risk("merchant_risk_score"),
        "card_risk_score": risk("card_risk_score"),
        "customer_risk_score": risk("customer_risk_score"),
        "is_velocity_alert": flag("is_velocity_alert"),
        "is_location_alert": flag("is_location_alert"),
        "is_device_alert": flag("is_device_alert"),
        "is_high_value": flag("is_high_value"),
        "channel_online": 1.0 if channel in ONLINE_CHANNELS else 0.0,
        "channel_atm": 1.0 if channel == "atm" else 0.0,
        "transaction_type": float(tx["type"]),
    }
    for hours, (count, _), avg in zip(WINDOWS_HOURS, stats, averages):
        v[f"count_{hours}h"] = float(count)
        v[f"avg_amount_log1p_{hours}h"] = math.log1p(avg)
    assert set(v) == set(NAMES), "features.py and feature_schema.json disagree"
    return [v[name] for name in NAMES]


def builtin_probability(f):
    """The service's built-in baseline (crates/model/src/builtin.rs), to compare against."""
    x = dict(zip(NAMES, f))
    val = lambda name, missing: missing if math.isnan(x[name]) else x[name]
    z = -6.2
    for name, weight, missing in [
        ("amount_log1p", 0.45, 0.0),
        ("merchant_risk_score", 1.5, 0.5),
        ("card_risk_score", 1.5, 0.5),
        ("customer_risk_score", 1.0, 0.5),
        ("is_velocity_alert", 0.9, 0.0),
        ("is_location_alert", 0.7, 0.0),
        ("is_device_alert", 0.7, 0.0),
        ("is_high_value", 0.4, 0.0),
        ("is_night", 0.5, 0.0),
        ("channel_online", 0.3, 0.0),
        ("channel_atm", 0.3, 0.0),
    ]:
        z += weight * val(name, missing)
    z += 0.6 * math.log(max(val("count_3h", 1.0), 1.0))
    z += 0.25 * math.log(max(val("count_24h", 1.0), 1.0))
    z += 0.5 * math.log(max(val("amount_to_avg_24h", 1.0), 1.0))
    return 1.0 / (1.0 + math.exp(-z))

