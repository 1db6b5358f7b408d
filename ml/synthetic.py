"""Labelled synthetic card transactions with planted fraud patterns.

Synthetic, not real: the patterns are the ones fraud teams describe, planted with noise so that a
model has to learn them from the service's features rather than from a single flag:

- velocity bursts: many payments on one card within minutes to an hour;
- account takeover: a new device and location (the client's device and location rules fire most
  of the time) and an amount well above the customer's usual;
- high amounts at risky merchants: merchant risk well above normal, amounts 5-30x usual;
- night-time card testing: series of tiny online payments between 00:00 and 05:59 local time.

Legitimate traffic has its own noise: alerts that fire without fraud, risk scores that are
missing, big purchases, night owls. Every transaction has the shape the API accepts.
"""

import random
from datetime import datetime, timedelta, timezone

CHANNELS = ["pos", "online", "mobile", "atm", "web"]
CURRENCIES = ["EUR", "USD", "GBP"]
OFFSETS = [0, 1, 2, -5]  # hours: customers in several time zones


class Generator:
    def __init__(self, seed, customers, days, start):
        self.rng = random.Random(seed)
        self.customers = customers
        self.days = days
        self.start = start
        self.txs = []
        self.next_id = 0

    def profile(self, i):
        r = self.rng
        return {
            "id": f"cust-{i:05d}",
            # Skewed activity: most customers pay a few times a day, some dozens of times.
            "per_day": min(40.0, r.lognormvariate(0.8, 0.8)),
            "amount_mu": r.uniform(2.5, 4.5),  # median e^mu: 12 to 90
            "channel": r.choices(CHANNELS, weights=[5, 3, 3, 1, 1])[0],
            "offset": r.choice(OFFSETS),
            "currency": r.choices(CURRENCIES, weights=[6, 3, 1])[0],
            "device": f"dev-{r.getrandbits(40):010x}",
            "location": r.choice(["Paris, FR", "Lyon, FR", "Berlin, DE", "London, GB", "Austin, US"]),
            "ip": f"198.51.{r.randrange(256)}.{r.randrange(1, 255)}",
            "bin": r.choice(["411111", "550000", "400000", "520000", "371449"]),
            "customer_risk": r.betavariate(2, 12),
            "night_owl": r.random() < 0.08,
        }

    def emit(self, p, at, amount, fraud, **over):
        r = self.rng
        tz = timezone(timedelta(hours=p["offset"]))
        self.next_id += 1
        tx = {
            "customer_id": p["id"],
            "transaction_id": f"tx-{self.next_id:08d}",
            "amount": round(max(0.01, amount), 2),
            "currency": p["currency"],
            "type": r.choices([1, 2, 3, 4], weights=[8, 2, 1, 1])[0],
            "merchant_id": f"m-{r.randrange(2000):04d}",
            "card_bin": p["bin"],
            "ip_address": p["ip"],
            "device_id": p["device"],
            "location": p["location"],
            "channel": p["channel"],
            "timestamp": at.astimezone(tz).isoformat(timespec="microseconds"),
            "merchant_risk_score": round(r.betavariate(2, 10), 4),
            "card_risk_score": round(r.betavariate(2, 12), 4),
            "customer_risk_score": round(p["customer_risk"], 4),
            "is_velocity_alert": r.random() < 0.01,
            "is_location_alert": r.random() < 0.02,
            "is_device_alert": r.random() < 0.02,
            "is_high_value": False,
            "is_fraud": fraud,
        }
        tx.update(over)
        # Clients do not always send their risk scores.
        for name in ("merchant_risk_score", "card_risk_score", "customer_risk_score"):
            if r.random() < 0.1:
                tx[name] = None
        tx["is_high_value"] = tx["is_high_value"] or tx["amount"] > 1000
        self.txs.append((at, tx))

    def local_time(self, p, day, hour_weights):
        """A time on `day` whose local hour follows `hour_weights`."""
        r = self.rng
        hour = r.choices(range(24), weights=hour_weights)[0]
        local = self.start + timedelta(days=day, hours=hour, seconds=r.uniform(0, 3600))
        return local - timedelta(hours=p["offset"])

    def legit(self, p):
        r = self.rng
        hours = [1 if h < 6 else 6 if 8 <= h <= 21 else 3 for h in range(24)]
        if p["night_owl"]:
            hours = [4] * 24
        for day in range(self.days):
            for _ in range(poisson(r, p["per_day"])):
                amount = r.lognormvariate(p["amount_mu"], 0.7)
                if r.random() < 0.01:
                    amount *= r.uniform(5, 20)  # the odd big purchase
                self.emit(p, self.local_time(p, day, hours), amount, False)

    def fraud(self, p):
        r = self.rng
        day = r.randrange(self.days)
        at = self.local_time(p, day, [1] * 24)
        pattern = r.choice(["burst", "takeover", "risky_merchant", "card_testing"])
        usual = r.lognormvariate(p["amount_mu"], 0.3)
        if pattern == "burst":
            for _ in range(r.randint(4, 14)):
                at += timedelta(seconds=r.uniform(20, 600))
                self.emit(p, at, usual * r.uniform(0.5, 3), True, channel="online",
                          is_velocity_alert=r.random() < 0.5)
        elif pattern == "takeover":
            over = dict(device_id=f"dev-{r.getrandbits(40):010x}", location="Lagos, NG",
                        ip_address=f"203.0.113.{r.randrange(1, 255)}",
                        is_device_alert=r.random() < 0.7, is_location_alert=r.random() < 0.6,
                        card_risk_score=round(r.betavariate(4, 6), 4))
            for _ in range(r.randint(1, 3)):
                at += timedelta(minutes=r.uniform(1, 90))
                self.emit(p, at, usual * r.uniform(3, 12), True, **over)
        elif pattern == "risky_merchant":
            self.emit(p, at, usual * r.uniform(5, 30), True,
                      merchant_risk_score=round(r.betavariate(8, 3), 4), channel="online")
        else:
            night = self.local_time(p, day, [1 if h < 6 else 0 for h in range(24)])
            for _ in range(r.randint(3, 10)):
                night += timedelta(seconds=r.uniform(10, 300))
                self.emit(p, night, r.uniform(0.5, 5), True, channel="web",
                          card_risk_score=round(r.betavariate(3, 7), 4))

    def run(self, fraud_customer_share):
        for i in range(self.customers):
            p = self.profile(i)
            self.legit(p)
            if self.rng.random() < fraud_customer_share:
                self.fraud(p)
        self.txs.sort(key=lambda pair: pair[0])
        return [tx for _, tx in self.txs]


def poisson(r, lam):
    # Knuth's method: lam stays small here.
    l, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= l:
            return k
        k += 1


def generate(seed, customers, days, fraud_customer_share=0.12):
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    return Generator(seed, customers, days, start).run(fraud_customer_share)
