//! The `antifraud` binary: reads the configuration, sets up logging and runs the service; or,
//! as `antifraud rules check FILE`, checks a rule file; or, as `antifraud replay …`, backtests
//! rule files on recorded transactions.

use std::process::ExitCode;

use antifraud_app::config::LogFormat;
use antifraud_app::{Application, Settings, telemetry};

/// The subcommands run without the service's runtime (`replay` builds its own); the service
/// runs on actix's.
fn main() -> ExitCode {
    // `antifraud rules check FILE`: checks a rule file and exits, for rule authors' CI.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // `antifraud replay …`: backtests rule files on recorded transactions.
    if args.first().is_some_and(|a| a == "replay") {
        return antifraud_app::replay::main(args.into_iter().skip(1));
    }
    if args.first().is_some_and(|a| a == "rules") {
        return match args.as_slice() {
            [_, check, file] if check == "check" => {
                match antifraud_app::rules::check(std::path::Path::new(file)) {
                    Ok(summary) => {
                        use std::io::Write as _;
                        // A closed stdout (`| head`) is no failure of the check.
                        let _ = std::io::stdout().write_all(summary.as_bytes());
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        eprintln!("antifraud rules check: {error}");
                        ExitCode::from(1)
                    }
                }
            }
            _ => {
                eprintln!("usage: antifraud rules check FILE");
                ExitCode::from(2)
            }
        };
    }
    actix_web::rt::System::new().block_on(serve())
}

/// The service: settings, telemetry, the application, until SIGTERM or SIGINT.
async fn serve() -> ExitCode {
    // Before any HTTP client exists (OTLP exporter, remote model): see the function's docs.
    antifraud_model::install_crypto_provider();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            // One line, naming the setting, before anything else is printed.
            eprintln!("antifraud: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(settings.log_format, settings.otlp.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("antifraud: invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    let log_format = settings.log_format;
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(error) => {
            // One line: a JSON log line for log pipelines, plain text for people.
            match log_format {
                LogFormat::Json => {
                    tracing::error!(error = format!("{error:#}"), "antifraud failed to start");
                }
                LogFormat::Text => eprintln!("antifraud: cannot start: {error:#}"),
            }
            return ExitCode::from(1);
        }
    };
    let result = application.run_until_stopped().await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "antifraud stopped on an error");
            ExitCode::from(1)
        }
    }
}
