//! An HTTP + JSON echo on the service's own stack: the ceiling `cargo xtask bench` measures the
//! service against. It reads `POST /api/v1/transactions` with the service's body parser into
//! the service's request struct and writes that struct back as JSON: the same actix-web, one
//! worker per core, keep-alive; no validation, store, model, metrics or logging.

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::problem::ApiError;
use crate::routes::parse_body;

/// Serves the echo on `listen` until the process is stopped.
///
/// # Errors
/// When `listen` cannot be bound.
pub async fn run(listen: SocketAddr) -> std::io::Result<()> {
    HttpServer::new(|| App::new().route("/api/v1/transactions", web::post().to(echo)))
        .bind(listen)?
        .run()
        .await
}

async fn echo(body: web::Bytes) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(parse_body(&body)?))
}
