//! Realistic transactions: a skewed population of customers with stable habits, planted attacks
//! and replays of earlier requests.
//!
//! Deterministic for a seed (a SplitMix64 stream), except the timestamps (the send time) and the
//! transaction ids (which carry a per-run nonce, so that a second run against the same store is
//! not a stream of replays).

use serde_json::{Value, json};

/// SplitMix64: small, fast, good enough for traffic shapes, and reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n), 0 for n = 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Log-normal with median `e^mu` and shape `sigma` (Box–Muller).
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * z).exp()
    }
}

/// A customer's habits, derived from its index and the seed: the same customer always looks the
/// same.
struct Profile {
    id: String,
    amount_mu: f64,
    channel: &'static str,
    currency: &'static str,
    device: String,
    location: &'static str,
    ip: String,
    bin: &'static str,
    customer_risk: f64,
}

const CHANNELS: [&str; 5] = ["pos", "online", "mobile", "web", "atm"];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
const LOCATIONS: [&str; 6] = [
    "Paris, FR",
    "Lyon, FR",
    "Berlin, DE",
    "London, GB",
    "Austin, US",
    "Madrid, ES",
];
const BINS: [&str; 5] = ["411111", "550000", "400000", "520000", "371449"];
const MERCHANTS: u64 = 5000;

/// Which planted attack a transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Legit,
    Burst,
    Takeover,
    RiskyMerchant,
    /// A resend of an earlier request.
    Replay,
}

/// The traffic generator.
pub(crate) struct Traffic {
    rng: Rng,
    seed: u64,
    customers: u64,
    fraud_ratio: f64,
    duplicate_ratio: f64,
    nonce: String,
    sequence: u64,
    /// Customers in the middle of a velocity burst, with the transactions left.
    bursts: Vec<(u64, u32)>,
    /// Recent bodies, for replays.
    recent: Vec<String>,
}

impl Traffic {
    pub(crate) fn new(
        seed: u64,
        customers: u64,
        fraud_ratio: f64,
        duplicate_ratio: f64,
        nonce: String,
    ) -> Self {
        Traffic {
            rng: Rng::new(seed),
            seed,
            customers: customers.max(1),
            fraud_ratio,
            duplicate_ratio,
            nonce,
            sequence: 0,
            bursts: Vec::new(),
            recent: Vec::with_capacity(RECENT),
        }
    }

    fn profile(&self, index: u64) -> Profile {
        let mut r = Rng::new(self.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
        Profile {
            id: format!("load-cust-{index:07}"),
            amount_mu: 2.5 + r.unit() * 2.5,
            channel: CHANNELS[weighted(&mut r, &[5, 3, 3, 1, 1])],
            currency: CURRENCIES[weighted(&mut r, &[6, 3, 1])],
            device: format!("dev-{:012x}", r.next_u64() >> 16),
            location: LOCATIONS[r.below(LOCATIONS.len() as u64) as usize],
            ip: format!("198.51.{}.{}", r.below(256), 1 + r.below(254)),
            bin: BINS[r.below(BINS.len() as u64) as usize],
            customer_risk: (r.unit() * r.unit() * 0.6 * 1e4).round() / 1e4,
        }
    }

    /// A customer, most activity going to few: the busiest 1 % of customers send 20 % of the
    /// transactions, the next 19 % send half, and the remaining 80 % the last 30 %, uniformly
    /// within each tier. (A power law put one card at several per cent of all traffic, a bot
    /// rather than a customer.)
    fn pick_customer(&mut self) -> u64 {
        let n = self.customers;
        let busy = (n / 100).max(1);
        let regular = (n / 5).max(busy + 1).min(n);
        let u = self.rng.unit();
        let (low, high) = if u < 0.2 {
            (0, busy)
        } else if u < 0.7 {
            (busy, regular)
        } else {
            (regular, n)
        };
        if high <= low {
            return low.min(n - 1);
        }
        low + self.rng.below(high - low)
    }

    /// The next request body, sent at `timestamp` (RFC 3339), and what it is.
    pub(crate) fn next(&mut self, timestamp: &str) -> (String, Kind) {
        if !self.recent.is_empty() && self.rng.chance(self.duplicate_ratio) {
            let body = self.recent[self.rng.below(self.recent.len() as u64) as usize].clone();
            return (body, Kind::Replay);
        }
        let (customer, kind) = if let Some(slot) = self.bursts.first_mut() {
            // A burst in progress interleaves with normal traffic.
            if self.rng.chance(0.5) {
                let customer = slot.0;
                slot.1 -= 1;
                if slot.1 == 0 {
                    self.bursts.remove(0);
                }
                (customer, Kind::Burst)
            } else {
                (self.pick_customer(), Kind::Legit)
            }
        } else if self.rng.chance(self.fraud_ratio) {
            let customer = self.pick_customer();
            match self.rng.below(3) {
                0 => {
                    self.bursts.push((customer, 3 + self.rng.below(10) as u32));
                    (customer, Kind::Burst)
                }
                1 => (customer, Kind::Takeover),
                _ => (customer, Kind::RiskyMerchant),
            }
        } else {
            (self.pick_customer(), Kind::Legit)
        };
        let body = self.body(customer, kind, timestamp);
        if self.recent.len() < RECENT {
            self.recent.push(body.clone());
        } else {
            let slot = self.rng.below(RECENT as u64) as usize;
            self.recent[slot] = body.clone();
        }
        (body, kind)
    }

    fn body(&mut self, customer: u64, kind: Kind, timestamp: &str) -> String {
        let p = self.profile(customer);
        let r = &mut self.rng;
        self.sequence += 1;
        let usual = r.lognormal(p.amount_mu, 0.7);
        let merchant = r.below(MERCHANTS);
        // Most merchants are safe; one in twenty is risky.
        let merchant_risk = if merchant.is_multiple_of(20) {
            0.7 + r.unit() * 0.3
        } else {
            r.unit() * 0.3
        };
        let mut tx = json!({
            "customer_id": p.id,
            "transaction_id": format!("load-{}-{}", self.nonce, self.sequence),
            "amount": cents(usual),
            "currency": p.currency,
            "type": 1 + weighted(r, &[8, 2, 1, 1]),
            "merchant_id": format!("m-{merchant:05}"),
            "card_bin": p.bin,
            "ip_address": p.ip,
            "device_id": p.device,
            "location": p.location,
            "channel": p.channel,
            "timestamp": timestamp,
            "merchant_risk_score": round4(merchant_risk),
            "card_risk_score": round4(r.unit() * r.unit() * 0.5),
            "customer_risk_score": p.customer_risk,
            "is_velocity_alert": r.chance(0.01),
            "is_location_alert": r.chance(0.02),
            "is_device_alert": r.chance(0.02),
            "is_fraud": kind != Kind::Legit,
        });
        let set = |tx: &mut Value, key: &str, value: Value| tx[key] = value;
        match kind {
            Kind::Legit | Kind::Replay => {}
            Kind::Burst => {
                set(&mut tx, "channel", json!("online"));
                set(
                    &mut tx,
                    "amount",
                    json!(cents(usual * (0.5 + r.unit() * 2.5))),
                );
                set(&mut tx, "is_velocity_alert", json!(r.chance(0.5)));
            }
            Kind::Takeover => {
                set(
                    &mut tx,
                    "device_id",
                    json!(format!("dev-{:012x}", r.next_u64() >> 16)),
                );
                set(&mut tx, "location", json!("Lagos, NG"));
                set(
                    &mut tx,
                    "ip_address",
                    json!(format!("203.0.113.{}", 1 + r.below(254))),
                );
                set(
                    &mut tx,
                    "amount",
                    json!(cents(usual * (3.0 + r.unit() * 9.0))),
                );
                set(&mut tx, "is_device_alert", json!(r.chance(0.7)));
                set(&mut tx, "is_location_alert", json!(r.chance(0.6)));
            }
            Kind::RiskyMerchant => {
                set(
                    &mut tx,
                    "merchant_risk_score",
                    json!(round4(0.75 + r.unit() * 0.25)),
                );
                set(
                    &mut tx,
                    "amount",
                    json!(cents(usual * (5.0 + r.unit() * 25.0))),
                );
                set(&mut tx, "channel", json!("online"));
            }
        }
        let amount = tx["amount"].as_f64().unwrap_or_default();
        tx["is_high_value"] = json!(amount > 1000.0);
        tx.to_string()
    }
}

/// Bodies kept for replays.
const RECENT: usize = 4096;

fn weighted(r: &mut Rng, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let mut x = r.below(total);
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

fn cents(amount: f64) -> f64 {
    (amount.max(0.01) * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, n: usize, fraud: f64, dup: f64) -> Vec<(Value, Kind)> {
        let mut t = Traffic::new(seed, 10_000, fraud, dup, "test".into());
        (0..n)
            .map(|_| {
                let (body, kind) = t.next("2026-11-25T12:00:00Z");
                (serde_json::from_str(&body).expect("JSON"), kind)
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let a: Vec<String> = run(7, 200, 0.05, 0.02)
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect();
        let b: Vec<String> = run(7, 200, 0.05, 0.02)
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect();
        let c: Vec<String> = run(8, 200, 0.05, 0.02)
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn activity_is_skewed_and_habits_are_stable() {
        let txs = run(1, 20_000, 0.0, 0.0);
        let mut per_customer = std::collections::HashMap::<String, Vec<&Value>>::new();
        for (tx, _) in &txs {
            per_customer
                .entry(tx["customer_id"].as_str().expect("id").to_owned())
                .or_default()
                .push(tx);
        }
        let mut counts: Vec<usize> = per_customer.values().map(Vec::len).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_100: usize = counts.iter().take(100).sum();
        assert!(
            top_100 * 100 > txs.len() * 17,
            "the busiest 1 % send about a fifth: {top_100}"
        );
        assert!(
            counts[0] * 100 < txs.len(),
            "no customer sends a percent: {}",
            counts[0]
        );
        let rare = counts.iter().filter(|&&c| c <= 2).count();
        assert!(rare * 2 > counts.len(), "most customers are rare");
        for txs in per_customer.values() {
            for field in ["device_id", "location", "card_bin", "currency", "channel"] {
                assert!(
                    txs.iter().all(|t| t[field] == txs[0][field]),
                    "{field} is stable"
                );
            }
        }
    }

    #[test]
    fn ratios_are_honoured_and_planted_attacks_look_like_attacks() {
        let txs = run(3, 50_000, 0.05, 0.03);
        let share =
            |k: Kind| txs.iter().filter(|(_, kind)| *kind == k).count() as f64 / txs.len() as f64;
        assert!(
            (share(Kind::Replay) - 0.03).abs() < 0.005,
            "{}",
            share(Kind::Replay)
        );
        let attacks = share(Kind::Burst) + share(Kind::Takeover) + share(Kind::RiskyMerchant);
        assert!(attacks > 0.05 && attacks < 0.25, "{attacks}");
        let mean = |k: Kind, field: &str| {
            let v: Vec<f64> = txs
                .iter()
                .filter(|(_, kind)| *kind == k)
                .map(|(t, _)| t[field].as_f64().expect("number"))
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean(Kind::RiskyMerchant, "merchant_risk_score") > 0.75);
        assert!(mean(Kind::Legit, "merchant_risk_score") < 0.3);
        assert!(mean(Kind::Takeover, "amount") > 3.0 * mean(Kind::Legit, "amount"));
        let ids: std::collections::HashSet<&str> = txs
            .iter()
            .filter(|(_, kind)| *kind != Kind::Replay)
            .map(|(t, _)| t["transaction_id"].as_str().expect("id"))
            .collect();
        assert_eq!(
            ids.len(),
            txs.iter().filter(|(_, kind)| *kind != Kind::Replay).count(),
            "ids are unique"
        );
    }
}
