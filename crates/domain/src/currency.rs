//! ISO 4217 currency codes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::Violation;

/// An ISO 4217 alphabetic currency code in use for payments, such as `EUR`.
///
/// Only upper-case codes of the current ISO 4217 list are accepted; funds, precious metals,
/// bond units and the test codes (`XAU`, `XDR`, `XTS`, `XXX`, ...) are not payment currencies and
/// are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// The current ISO 4217 list (amendment 179, 2025) less non-payment codes, sorted for binary
/// search. ANG stays accepted through its 2025-2026 replacement by XCG.
const CODES: [&str; 158] = [
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
    "ZWG", "ZWL",
];

impl Currency {
    /// Parses an upper-case ISO 4217 alphabetic code.
    pub fn parse(code: &str) -> Result<Self, Violation> {
        match code.as_bytes() {
            &[a, b, c] if CODES.binary_search(&code).is_ok() => Ok(Currency([a, b, c])),
            _ => Err(Violation::UnknownCurrency),
        }
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // Invariant: built only by `parse` from one of `CODES`, which are ASCII.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = Violation;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Currency::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_list_is_sorted_and_unique_so_binary_search_finds_every_code() {
        assert!(CODES.windows(2).all(|pair| pair[0] < pair[1]));
        for code in CODES {
            assert_eq!(
                Currency::parse(code).map(|c| c.to_string()),
                Ok(code.to_owned())
            );
        }
    }

    #[test]
    fn refuses_lower_case_unknown_and_non_payment_codes() {
        for code in [
            "eur",
            "Eur",
            "EURO",
            "EU",
            "",
            "ABC",
            "XAU",
            "XTS",
            "XXX",
            "€€€",
        ] {
            assert_eq!(
                Currency::parse(code),
                Err(Violation::UnknownCurrency),
                "{code}"
            );
        }
    }
}
