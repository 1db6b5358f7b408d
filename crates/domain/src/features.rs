//! The feature vector a model sees: one definition shared by the service, the models and the
//! training code.

use crate::transaction::Transaction;
use crate::window::{Window, WindowStats};

/// Bumped whenever a feature is added, removed, reordered or computed differently. A model is
/// trained for one version.
pub const FEATURE_SCHEMA_VERSION: u32 = 1;

macro_rules! features {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One position of the feature vector.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Feature {
            $($(#[$doc])* $variant,)*
        }

        impl Feature {
            /// Every feature, in vector order.
            pub const ALL: [Feature; [$($name,)*].len()] = [$(Feature::$variant,)*];

            /// The feature's name, as training code and model metadata spell it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Feature::$variant => $name,)*
                }
            }
        }

        /// Feature names in vector order.
        pub const FEATURE_NAMES: [&str; Feature::ALL.len()] = [$($name,)*];
    };
}

features! {
    /// `ln(1 + amount)`.
    AmountLog1p = "amount_log1p",
    /// Transactions in the last 3 h, this one included.
    Count3h = "count_3h",
    /// Transactions in the last 6 h, this one included.
    Count6h = "count_6h",
    /// Transactions in the last 12 h, this one included.
    Count12h = "count_12h",
    /// Transactions in the last 24 h, this one included.
    Count24h = "count_24h",
    /// `ln(1 + average amount)` over the last 3 h.
    AvgAmountLog1p3h = "avg_amount_log1p_3h",
    /// `ln(1 + average amount)` over the last 6 h.
    AvgAmountLog1p6h = "avg_amount_log1p_6h",
    /// `ln(1 + average amount)` over the last 12 h.
    AvgAmountLog1p12h = "avg_amount_log1p_12h",
    /// `ln(1 + average amount)` over the last 24 h.
    AvgAmountLog1p24h = "avg_amount_log1p_24h",
    /// `amount / average amount over 24 h`; `1` when that average is `0`.
    AmountToAvg24h = "amount_to_avg_24h",
    /// Hour of day, 0..=23, in the timestamp's own offset (the payer's local time when the client
    /// sends it).
    HourOfDay = "hour_of_day",
    /// `1` between 00:00 and 05:59 local time, else `0`.
    IsNight = "is_night",
    /// The client's merchant risk; NaN when absent.
    MerchantRiskScore = "merchant_risk_score",
    /// The client's card risk; NaN when absent.
    CardRiskScore = "card_risk_score",
    /// The client's customer risk; NaN when absent.
    CustomerRiskScore = "customer_risk_score",
    /// `1` when the client's velocity rule fired.
    IsVelocityAlert = "is_velocity_alert",
    /// `1` when the client's location rule fired.
    IsLocationAlert = "is_location_alert",
    /// `1` when the client's device rule fired.
    IsDeviceAlert = "is_device_alert",
    /// `1` when the client flags the amount as high.
    IsHighValue = "is_high_value",
    /// `1` for card-not-present channels: `online`, `web`, `ecommerce`, `mobile`.
    ChannelOnline = "channel_online",
    /// `1` for `atm`.
    ChannelAtm = "channel_atm",
    /// The transaction type code.
    TransactionType = "transaction_type",
}

/// The feature vector of one transaction, version [`FEATURE_SCHEMA_VERSION`].
///
/// Missing-value rule: an absent optional number is NaN; an absent flag is `0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Features([f64; Feature::ALL.len()]);

impl Features {
    /// Computes the features of `tx` given the customer's statistics at its time.
    pub fn new(tx: &Transaction, stats: &WindowStats) -> Self {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let avg_24h = stats.get(Window::Hours24).average();
        let hour = tx.timestamp().hour();
        let channel = tx.channel().to_ascii_lowercase();
        let mut v = [0.0; Feature::ALL.len()];
        let mut set = |feature: Feature, value: f64| v[feature as usize] = value;
        set(Feature::AmountLog1p, tx.amount().ln_1p());
        for (window, count, avg) in [
            (Window::Hours3, Feature::Count3h, Feature::AvgAmountLog1p3h),
            (Window::Hours6, Feature::Count6h, Feature::AvgAmountLog1p6h),
            (
                Window::Hours12,
                Feature::Count12h,
                Feature::AvgAmountLog1p12h,
            ),
            (
                Window::Hours24,
                Feature::Count24h,
                Feature::AvgAmountLog1p24h,
            ),
        ] {
            set(count, stats.get(window).count as f64);
            set(avg, stats.get(window).average().ln_1p());
        }
        set(
            Feature::AmountToAvg24h,
            if avg_24h > 0.0 {
                tx.amount() / avg_24h
            } else {
                1.0
            },
        );
        set(Feature::HourOfDay, f64::from(hour));
        set(Feature::IsNight, flag(hour < 6));
        set(
            Feature::MerchantRiskScore,
            tx.merchant_risk_score().unwrap_or(f64::NAN),
        );
        set(
            Feature::CardRiskScore,
            tx.card_risk_score().unwrap_or(f64::NAN),
        );
        set(
            Feature::CustomerRiskScore,
            tx.customer_risk_score().unwrap_or(f64::NAN),
        );
        set(Feature::IsVelocityAlert, flag(tx.is_velocity_alert()));
        set(Feature::IsLocationAlert, flag(tx.is_location_alert()));
        set(Feature::IsDeviceAlert, flag(tx.is_device_alert()));
        set(Feature::IsHighValue, flag(tx.is_high_value()));
        set(
            Feature::ChannelOnline,
            flag(matches!(
                channel.as_str(),
                "online" | "web" | "ecommerce" | "mobile"
            )),
        );
        set(Feature::ChannelAtm, flag(channel == "atm"));
        set(Feature::TransactionType, f64::from(tx.kind()));
        Features(v)
    }

    /// A vector computed elsewhere (stored, or built by training code), in [`FEATURE_NAMES`]
    /// order; `None` unless it has exactly one value per feature.
    pub fn from_slice(values: &[f64]) -> Option<Self> {
        values.try_into().ok().map(Features)
    }

    /// One feature's value.
    pub fn get(&self, feature: Feature) -> f64 {
        self.0[feature as usize]
    }

    /// The whole vector, in [`FEATURE_NAMES`] order.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
}
