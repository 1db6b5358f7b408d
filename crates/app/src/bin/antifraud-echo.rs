//! `antifraud-echo [HOST:PORT]`: the service's HTTP + JSON stack with nothing behind it, for
//! `cargo xtask bench` (see `antifraud_app::echo`).

use std::net::SocketAddr;
use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let Ok(listen) = listen.parse::<SocketAddr>() else {
        eprintln!("antifraud-echo: expected HOST:PORT, got {listen:?}");
        return ExitCode::from(2);
    };
    match antifraud_app::echo::run(listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("antifraud-echo: {error}");
            ExitCode::from(1)
        }
    }
}
