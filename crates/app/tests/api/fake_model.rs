//! A fake Open Inference Protocol model server on a free loopback port, made to answer, be slow,
//! fail or be unready as a test needs.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// How the fake model server behaves.
#[derive(Clone)]
pub(crate) enum Behaviour {
    Answer(Value),
    Slow(Duration),
    Fail,
    NotReady,
}

/// What the fake server saw.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) bodies: Vec<Value>,
    pub(crate) traceparents: Vec<Option<String>>,
}

/// An Open Inference Protocol server on a free loopback port, made to behave as a test needs.
pub(crate) struct FakeModelServer {
    pub(crate) url: String,
    behaviour: Arc<Mutex<Behaviour>>,
    pub(crate) seen: Arc<Mutex<Seen>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeModelServer {
    pub(crate) fn start(behaviour: Behaviour) -> Self {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!(
            "http://{}/v2/models/fraud-remote",
            listener.local_addr().expect("bound")
        );
        let (b, s) = (behaviour.clone(), seen.clone());
        let server = HttpServer::new(move || {
            let (b, s) = (b.clone(), s.clone());
            let b2 = b.clone();
            App::new()
                .route(
                    "/v2/models/fraud-remote",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(json!({
                            "name": "fraud-remote",
                            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 22]}],
                            "outputs": [{"name": "label"}, {"name": "probabilities"}]
                        }))
                    }),
                )
                .route(
                    "/v2/models/fraud-remote/ready",
                    web::get().to(move || {
                        let b = b2.clone();
                        async move {
                            match *b.lock().expect("lock") {
                                Behaviour::NotReady => HttpResponse::ServiceUnavailable().finish(),
                                _ => HttpResponse::Ok().finish(),
                            }
                        }
                    }),
                )
                .route(
                    "/v2/models/fraud-remote/infer",
                    web::post().to(move |request: HttpRequest, body: web::Bytes| {
                        let (b, s) = (b.clone(), s.clone());
                        async move {
                            {
                                let mut seen = s.lock().expect("lock");
                                seen.bodies
                                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                                seen.traceparents.push(
                                    request
                                        .headers()
                                        .get("traceparent")
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_owned),
                                );
                            }
                            let behaviour = b.lock().expect("lock").clone();
                            match behaviour {
                                Behaviour::Answer(answer) => HttpResponse::Ok().json(answer),
                                Behaviour::Slow(delay) => {
                                    tokio::time::sleep(delay).await;
                                    HttpResponse::Ok().json(probabilities(0.9))
                                }
                                Behaviour::Fail | Behaviour::NotReady => {
                                    HttpResponse::InternalServerError().body("model crashed")
                                }
                            }
                        }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .expect("listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeModelServer {
            url,
            behaviour,
            seen,
            handle,
        }
    }

    pub(crate) fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("lock") = behaviour;
    }
}

impl Drop for FakeModelServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

pub(crate) fn probabilities(p1: f64) -> Value {
    json!({
        "model_name": "fraud-remote",
        "outputs": [
            {"name": "label", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": [1.0 - p1, p1]}
        ]
    })
}
