//! The built-in baseline: a hand-set logistic regression over the feature vector.
//!
//! `score = 1 / (1 + e^(−z))` with
//!
//! ```text
//! z = −6.2
//!   + 0.45 · amount_log1p                      ln(1 + amount)
//!   + 0.60 · ln(count_3h)                      velocity: bursts of transactions
//!   + 0.25 · ln(count_24h)
//!   + 0.50 · ln(amount_to_avg_24h), ≥ 0 only   an amount far above the customer's day
//!   + 1.50 · merchant_risk_score               the client's own risk scores, 0.5 when absent
//!   + 1.50 · card_risk_score
//!   + 1.00 · customer_risk_score
//!   + 0.90 · is_velocity_alert + 0.70 · is_location_alert + 0.70 · is_device_alert
//!   + 0.40 · is_high_value + 0.50 · is_night + 0.30 · channel_online + 0.30 · channel_atm
//! ```
//!
//! The weights encode common fraud heuristics; they are not fitted to data. A 50 EUR daytime
//! purchase of a quiet customer with neutral risk scores scores about 0.08; a night-time burst
//! of ten high-value online payments at a risky merchant scores above 0.9.

use antifraud_domain::{Feature, Features, FraudModel, ModelError, ModelIdentity, Prediction};
use async_trait::async_trait;

/// The built-in logistic baseline. Cheap (a few dozen floating-point operations), so it runs
/// inline on the async worker.
#[derive(Debug, Clone, Default)]
pub struct BuiltinModel;

/// The baseline's name in responses and metrics.
pub(crate) const NAME: &str = "builtin-logistic";
/// Bumped whenever a weight changes.
pub(crate) const VERSION: &str = "1";

const INTERCEPT: f64 = -6.2;

/// (feature, weight, value when the feature is missing) for the linear terms.
const LINEAR: [(Feature, f64, f64); 11] = [
    (Feature::AmountLog1p, 0.45, 0.0),
    (Feature::MerchantRiskScore, 1.5, 0.5),
    (Feature::CardRiskScore, 1.5, 0.5),
    (Feature::CustomerRiskScore, 1.0, 0.5),
    (Feature::IsVelocityAlert, 0.9, 0.0),
    (Feature::IsLocationAlert, 0.7, 0.0),
    (Feature::IsDeviceAlert, 0.7, 0.0),
    (Feature::IsHighValue, 0.4, 0.0),
    (Feature::IsNight, 0.5, 0.0),
    (Feature::ChannelOnline, 0.3, 0.0),
    (Feature::ChannelAtm, 0.3, 0.0),
];

impl BuiltinModel {
    /// The fraud probability of one feature vector.
    pub fn probability(features: &Features) -> f64 {
        let value = |f: Feature, missing: f64| {
            let v = features.get(f);
            if v.is_nan() { missing } else { v }
        };
        let mut z = INTERCEPT;
        for (feature, weight, missing) in LINEAR {
            z += weight * value(feature, missing);
        }
        z += 0.6 * value(Feature::Count3h, 1.0).max(1.0).ln();
        z += 0.25 * value(Feature::Count24h, 1.0).max(1.0).ln();
        z += 0.5 * value(Feature::AmountToAvg24h, 1.0).max(1.0).ln();
        1.0 / (1.0 + (-z).exp())
    }
}

#[async_trait]
impl FraudModel for BuiltinModel {
    fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            name: NAME.into(),
            version: VERSION.into(),
        }
    }

    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError> {
        Ok(Prediction {
            probability: Self::probability(features),
            model: self.identity(),
        })
    }

    async fn check(&self) -> Result<(), ModelError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antifraud_domain::{TransactionInput, Window, WindowStat, WindowStats};
    use time::macros::datetime;

    fn features(input: TransactionInput, stats: WindowStats) -> Features {
        let tx = input
            .validate(datetime!(2026-11-25 23:59 UTC))
            .expect("valid");
        Features::new(&tx, &stats)
    }

    fn purchase(amount: f64, hour: u8, channel: &str) -> TransactionInput {
        TransactionInput {
            amount: Some(amount),
            channel: Some(channel.into()),
            timestamp: Some(format!("2026-11-25T{hour:02}:30:00Z")),
            ..TransactionInput::example()
        }
    }

    fn history(count: u64, avg: f64) -> WindowStats {
        let stat = WindowStat::exact(count, (avg * 1000.0).round() as u128 * u128::from(count));
        WindowStats::from_windows([stat; 4])
    }

    #[test]
    fn an_ordinary_purchase_scores_low() {
        let p = BuiltinModel::probability(&features(purchase(50.0, 14, "pos"), history(1, 50.0)));
        assert!((0.05..0.12).contains(&p), "{p}");
    }

    #[test]
    fn a_night_burst_of_large_online_payments_at_a_risky_merchant_scores_high() {
        let input = TransactionInput {
            merchant_risk_score: Some(0.95),
            is_high_value: Some(true),
            is_device_alert: Some(true),
            ..purchase(2_500.0, 3, "online")
        };
        let p = BuiltinModel::probability(&features(input, history(10, 400.0)));
        assert!(p > 0.9, "{p}");
    }

    #[test]
    fn each_risk_signal_raises_the_score() {
        let base = || purchase(80.0, 14, "pos");
        let p = |input, stats| BuiltinModel::probability(&features(input, stats));
        let ordinary = p(base(), history(1, 80.0));
        let raised = [
            p(purchase(800.0, 14, "pos"), history(1, 800.0)),
            p(base(), history(8, 80.0)),
            p(purchase(80.0, 2, "pos"), history(1, 80.0)),
            p(purchase(80.0, 14, "online"), history(1, 80.0)),
            p(
                TransactionInput {
                    card_risk_score: Some(0.9),
                    ..base()
                },
                history(1, 80.0),
            ),
            p(
                TransactionInput {
                    is_location_alert: Some(true),
                    ..base()
                },
                history(1, 80.0),
            ),
            p(base(), history(5, 10.0)),
        ];
        for (i, q) in raised.iter().enumerate() {
            assert!(*q > ordinary, "signal {i}: {q} <= {ordinary}");
        }
        assert_eq!(history(3, 1.0).get(Window::Hours3).count, 3);
    }

    #[test]
    fn the_score_is_a_probability_at_the_extremes() {
        let input = TransactionInput {
            merchant_risk_score: Some(1.0),
            card_risk_score: Some(1.0),
            customer_risk_score: Some(1.0),
            is_velocity_alert: Some(true),
            is_location_alert: Some(true),
            is_device_alert: Some(true),
            is_high_value: Some(true),
            ..purchase(1e12, 1, "atm")
        };
        let high = BuiltinModel::probability(&features(input, history(100_000, 1.0)));
        let low = BuiltinModel::probability(&features(purchase(0.0, 12, "pos"), history(1, 0.0)));
        assert!((0.0..=1.0).contains(&high) && (0.0..=1.0).contains(&low));
        assert!(high > 0.999 && low < 0.02, "{high} {low}");
    }
}
