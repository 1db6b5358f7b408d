//! The three sources of settings, each read through the declarations into [`Inputs`]: the
//! command line (clap's builder, generated from the table), the environment (through a lookup
//! function, so tests feed a map and never mutate the process environment), and the TOML file.

use std::ffi::OsString;
use std::path::Path;

use clap::{Arg, ArgAction, Command};

use super::ConfigError;
use super::table::{ALL, Inputs};

/// The command line, one option per declared flag; the settings without a flag are listed
/// after the options.
pub(crate) fn command() -> Command {
    let environment_only: Vec<String> = ALL
        .iter()
        .filter(|spec| spec.flag.is_none())
        .map(|spec| format!("  {}  {}", spec.env, spec.description()))
        .collect();
    ALL.iter().fold(
        Command::new("antifraud")
            .version(env!("CARGO_PKG_VERSION"))
            .about("Real-time transaction risk scoring service.")
            .after_help(format!(
                "From the environment only:\n{}",
                environment_only.join("\n")
            )),
        |command, spec| match spec.flag {
            None => command,
            Some(flag) => command.arg(
                Arg::new(spec.key)
                    .long(flag)
                    .value_name(spec.value_name)
                    .help(spec.help_line())
                    .action(ArgAction::Set),
            ),
        },
    )
}

/// The flags' text. `--help`, `--version` and usage errors are clap's to answer: it prints them
/// and exits, as any command-line tool does.
pub(crate) fn from_args<I, T>(args: I) -> Result<Inputs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let mut inputs = Inputs::default();
    for spec in ALL.iter().filter(|spec| spec.flag.is_some()) {
        let slot = inputs
            .slot(spec.key)
            .expect("every declaration has a field");
        *slot = matches.get_one::<String>(spec.key).cloned();
    }
    Ok(inputs)
}

/// The environment's text, through `lookup` (`std::env::var` in production, a map in tests).
/// A variable set to the empty string is set, as it was with clap's `env`.
pub(crate) fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Inputs {
    let mut inputs = Inputs::default();
    for spec in ALL {
        *inputs
            .slot(spec.key)
            .expect("every declaration has a field") = lookup(spec.env);
    }
    inputs
}

/// The file's text for each key it sets. Unknown keys are refused, so a typo cannot be silently
/// ignored; values may be TOML strings, numbers or booleans, checked like a flag's text.
pub(crate) fn from_file(path: &Path) -> Result<Inputs, ConfigError> {
    let error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    from_toml(&text).map_err(error)
}

/// The text of a configuration file, parsed; the error is one line.
pub(crate) fn from_toml(text: &str) -> Result<Inputs, String> {
    // toml's messages span several lines (they quote the offending line); keep the first.
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        e.message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned()
    })?;
    let mut inputs = Inputs::default();
    for (key, value) in table {
        let known = ALL.iter().any(|spec| spec.in_file && spec.key == key);
        let slot = inputs.slot(&key).filter(|_| known).ok_or_else(|| {
            let keys: Vec<&str> = ALL
                .iter()
                .filter(|spec| spec.in_file)
                .map(|spec| spec.key)
                .collect();
            format!("unknown key `{key}`, expected one of {}", keys.join(", "))
        })?;
        *slot = Some(match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(format!("`{key}` must be a string, a number or a boolean")),
        });
    }
    Ok(inputs)
}
