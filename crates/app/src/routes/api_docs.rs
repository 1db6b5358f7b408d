//! `GET /api-docs/openapi.json`.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

/// The OpenAPI document, rendered once at start-up.
pub(crate) struct OpenApiJson(pub(crate) String);

pub(crate) async fn openapi_json(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(document.0.clone())
}
