//! The machinery behind the one declaration of every setting (`settings!` in `table.rs`): what a
//! declaration holds, and the three sources (flags, environment, file) read from it.
//!
//! A setting is declared once, with its name (which is also its TOML key), flag, environment
//! variable, default, value parser and help line. Everything else is generated from that: the
//! [`Inputs`] struct (one source's text per setting), the typed values, the command line, the
//! environment and file readers, the help text, and the checks of the README's table. A default
//! therefore has exactly one spelling.

use std::fmt;

/// What a setting is when no source gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// This text, parsed as any given value is.
    Value(&'static str),
    /// Unset; the text says what that means ("embedded store"), or is empty.
    Unset(&'static str),
}

/// One setting's declaration, as data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    /// The name: the field of [`Inputs`], the TOML key, and (with dashes) the flag.
    pub(crate) key: &'static str,
    /// The flag without its dashes; `None` for settings that only come from the environment
    /// (secrets, which must not show in process lists).
    pub(crate) flag: Option<&'static str>,
    /// The environment variable.
    pub(crate) env: &'static str,
    /// Whether the configuration file may set it.
    pub(crate) in_file: bool,
    /// Whether the value is a secret: never echoed in an error.
    pub(crate) secret: bool,
    /// The placeholder shown in `--help`.
    pub(crate) value_name: &'static str,
    /// The default.
    pub(crate) fallback: Fallback,
    /// One line for `--help`.
    pub(crate) help: &'static str,
}

impl Spec {
    /// The default as the README's table shows it.
    #[cfg(test)]
    pub(crate) fn default_doc(&self) -> String {
        match self.fallback {
            Fallback::Value(text) => format!("`{text}`"),
            Fallback::Unset("") => "unset".to_owned(),
            Fallback::Unset(meaning) => format!("unset: {meaning}"),
        }
    }

    /// The description, on one line.
    pub(crate) fn description(&self) -> String {
        self.help.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The `--help` line: the description, the variable and the default.
    pub(crate) fn help_line(&self) -> String {
        let help = self.description();
        match self.fallback {
            Fallback::Value(text) => format!("{help} [env: {}] [default: {text}]", self.env),
            Fallback::Unset(_) => format!("{help} [env: {}]", self.env),
        }
    }
}

/// A setting, as named in error messages: `--flag (VARIABLE)`, or the variable alone for
/// settings that have no flag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Setting(pub(crate) &'static Spec);

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.flag {
            Some(flag) => write!(f, "--{flag} ({})", self.0.env),
            None => f.write_str(self.0.env),
        }
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The type a declared setting resolves to: the parser's type when there is a default,
/// `Option` of it when the setting may stay unset.
macro_rules! setting_type {
    ($ty:ty; $default:literal) => { $ty };
    ($ty:ty;) => { Option<$ty> };
}

/// The declared fallback as data.
macro_rules! setting_fallback {
    ($default:literal;) => {
        $crate::config::declare::Fallback::Value($default)
    };
    (; $unset:literal) => {
        $crate::config::declare::Fallback::Unset($unset)
    };
}

/// The declared value, or `$otherwise` when the declaration leaves it out.
macro_rules! declared_or {
    ($value:expr; $otherwise:expr) => {
        $value
    };
    (; $otherwise:expr) => {
        $otherwise
    };
}

/// Parses a setting's text, or its default when no source gave one.
macro_rules! setting_value {
    ($spec:expr, $text:expr, $parse:expr, $default:literal) => {
        $crate::config::declare::parse_or_default($spec, $text, $default, $parse)
    };
    ($spec:expr, $text:expr, $parse:expr,) => {
        $crate::config::declare::parse_optional($spec, $text, $parse)
    };
}

/// Declares every setting once. Each entry:
///
/// ```text
/// /// Help line.
/// name: Type {
///     flag: "name",                 // omitted for settings read only from the environment
///     env: "ANTIFRAUD_NAME",
///     file: false,                  // omitted: the TOML file may set it
///     secret: true,                 // omitted: not a secret
///     value: "PLACEHOLDER",
///     default: "text",              // or `unset: "what unset means"` (the type becomes Option)
///     parse: function,              // fn(&str) -> Result<Type, String>, the reason on error
/// }
/// ```
///
/// It generates [`Inputs`] (one source's text per setting), `Values` (each setting parsed, or
/// its default), and `SPECS` (the declarations, in order).
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident : $ty:ty {
            $(flag: $flag:literal,)?
            env: $env:literal,
            $(file: $file:literal,)?
            $(secret: $secret:literal,)?
            value: $value:literal,
            $(default: $default:literal,)?
            $(unset: $unset:literal,)?
            parse: $parse:expr $(,)?
        }
    )+) => {
        /// The text of each setting as one source gives it: the command line, the environment,
        /// the configuration file, or a test. `None`: this source does not set it.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct Inputs {
            $(
                $(#[doc = $doc])+
                pub $name: Option<String>,
            )+
        }

        impl Inputs {
            /// The text of the setting named `key`, by name (the sources and the tests go
            /// through the declarations rather than through each field).
            pub(crate) fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
                match key {
                    $(stringify!($name) => Some(&mut self.$name),)+
                    _ => None,
                }
            }

            /// This source over `lower`: each setting this one leaves unset comes from `lower`.
            pub(crate) fn over(self, lower: Inputs) -> Inputs {
                Inputs { $($name: self.$name.or(lower.$name),)+ }
            }
        }

        /// Each setting parsed, or its default. Not `Debug`: it holds secrets.
        pub(crate) struct Values {
            $(
                $(#[doc = $doc])+
                pub(crate) $name: $crate::config::declare::setting_type!($ty; $($default)?),
            )+
        }

        impl Values {
            /// Parses every setting of `inputs`; the first invalid one is the error.
            pub(crate) fn parse(inputs: &Inputs) -> Result<Values, ConfigError> {
                Ok(Values {
                    $($name: $crate::config::declare::setting_value!(
                        &SPECS.$name, inputs.$name.as_deref(), $parse, $($default)?
                    )?,)+
                })
            }
        }

        /// The declarations, one field per setting.
        pub(crate) struct Specs {
            $(
                $(#[doc = $doc])+
                pub(crate) $name: $crate::config::declare::Spec,
            )+
        }

        /// Every declaration, by name.
        pub(crate) static SPECS: Specs = Specs {
            $($name: $crate::config::declare::Spec {
                key: stringify!($name),
                flag: $crate::config::declare::declared_or!($(Some($flag))?; None),
                env: $env,
                in_file: $crate::config::declare::declared_or!($($file)?; true),
                secret: $crate::config::declare::declared_or!($($secret)?; false),
                value_name: $value,
                fallback: $crate::config::declare::setting_fallback!($($default)?; $($unset)?),
                help: concat!($($doc, " ",)+),
            },)+
        };

        /// Every declaration, in the order of the table.
        pub(crate) static ALL: &[&$crate::config::declare::Spec] = &[$(&SPECS.$name,)+];
    };
}

pub(crate) use {declared_or, setting_fallback, setting_type, setting_value, settings};

use super::ConfigError;

/// Parses `text`, or the declared default when no source set it. A default that does not parse
/// is a bug in the declaration, and a test parses every default.
pub(crate) fn parse_or_default<T>(
    spec: &'static Spec,
    text: Option<&str>,
    default: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let text = text.unwrap_or(default);
    parse(text).map_err(|reason| invalid(spec, text, reason))
}

/// Parses `text` when some source set it to something other than blanks: a blank value leaves
/// an optional setting unset (so `ANTIFRAUD_REDIS_URL=` means the embedded store).
pub(crate) fn parse_optional<T>(
    spec: &'static Spec,
    text: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    match text {
        Some(text) if !text.trim().is_empty() => parse(text)
            .map(Some)
            .map_err(|reason| invalid(spec, text, reason)),
        _ => Ok(None),
    }
}

/// An invalid value of `spec`, echoed unless it is a secret.
pub(crate) fn invalid(spec: &'static Spec, text: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        setting: Setting(spec),
        value: if spec.secret {
            "<redacted>".to_owned()
        } else {
            text.to_owned()
        },
        reason,
    }
}
