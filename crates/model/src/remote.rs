//! A remote model server speaking the Open Inference Protocol (KServe V2 REST), as KServe,
//! Seldon MLServer, NVIDIA Triton and others serve it.
//!
//! `POST {base}/infer` with one FP32 row of the feature vector; readiness from `{base}/ready`;
//! tensor names from the metadata at `{base}` (see [`RemoteModel::tensor_names`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use antifraud_domain::{Features, FraudModel, ModelError, ModelIdentity, Prediction};
use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::OnceCell;

/// Output names read as probabilities, in order of preference, when the metadata lists several.
const PROBABILITY_OUTPUTS: [&str; 3] = ["probabilities", "predict_proba", "probability"];
/// Output requested when the metadata lists none: MLServer's scikit-learn runtime answers
/// labels by default and probabilities under this name.
const DEFAULT_OUTPUT: &str = "predict_proba";
/// Input name used when the metadata lists none: the name the training pipeline exports.
const DEFAULT_INPUT: &str = "features";
/// How long a readiness or metadata request may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest response body read: a probability row is a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Headers added to every inference call, computed per call: the composition root uses it to
/// propagate W3C trace context without this crate depending on OpenTelemetry.
pub type HeaderHook = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Installs ring as the process's TLS crypto provider, once; later calls do nothing.
///
/// reqwest is built without a provider of its own (the default, aws-lc, compiles C for minutes)
/// and panics when a client is built before one is installed. Feature unification gives every
/// reqwest client in the workspace that behaviour, so every binary and test that builds one calls
/// this first. ring is the provider fred already brings.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// A model URL or its settings are unusable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RemoteModelError(String);

/// The input and output tensor names used on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorNames {
    /// The input tensor carrying the feature row.
    pub input: String,
    /// The output tensor read as the fraud probability.
    pub output: String,
}

/// A model served over the Open Inference Protocol.
pub struct RemoteModel {
    client: reqwest::Client,
    base: String,
    identity: ModelIdentity,
    overrides: (Option<String>, Option<String>),
    names: OnceCell<TensorNames>,
    call_timeout: Duration,
    headers: Option<HeaderHook>,
}

impl std::fmt::Debug for RemoteModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteModel")
            .field("base", &self.base)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl RemoteModel {
    /// A client for `url`: `http(s)://HOST:PORT/v2/models/NAME[/versions/VERSION]`, optionally
    /// with `?input=NAME&output=NAME` to set the tensor names. `call_timeout` is the scoring
    /// budget; see [`RemoteModel::backstop`] for how it bounds each call.
    /// inference call (the scoring budget).
    pub fn new(url: &str, call_timeout: Duration) -> Result<Self, RemoteModelError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let base = base.trim_end_matches('/');
        let bad = |why: &str| RemoteModelError(format!("{url}: {why}"));
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| bad("expected an http:// or https:// URL"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected a path /v2/models/NAME"))?;
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let segments: Vec<&str> = path.split('/').collect();
        let (name, version) = match segments.as_slice() {
            ["v2", "models", name] => (*name, None),
            ["v2", "models", name, "versions", version] => (*name, Some(*version)),
            _ => {
                return Err(bad(
                    "expected the path /v2/models/NAME or /v2/models/NAME/versions/VERSION",
                ));
            }
        };
        if name.is_empty() || version == Some("") {
            return Err(bad("empty model name or version"));
        }
        let mut overrides = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("input", v)) if !v.is_empty() => overrides.0 = Some(v.to_owned()),
                Some(("output", v)) if !v.is_empty() => overrides.1 = Some(v.to_owned()),
                _ => {
                    return Err(bad(
                        "the only query parameters are input=NAME and output=NAME",
                    ));
                }
            }
        }
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(CONTROL_TIMEOUT)
            .http1_only()
            .build()
            .map_err(|e| bad(&format!("cannot build the HTTP client: {e}")))?;
        Ok(RemoteModel {
            client,
            base: base.to_owned(),
            identity: ModelIdentity {
                name: name.to_owned(),
                version: version.unwrap_or("remote").to_owned(),
            },
            overrides,
            names: OnceCell::new(),
            call_timeout,
            headers: None,
        })
    }

    /// Adds headers to every inference call (trace context).
    pub fn with_headers(mut self, hook: HeaderHook) -> Self {
        self.headers = Some(hook);
        self
    }

    /// The tensor names, resolved once: the URL's `input`/`output` parameters; else the
    /// server's metadata (its first input; the first output named `probabilities`,
    /// `predict_proba` or `probability`, or its only output); else `features` and
    /// `predict_proba`.
    pub async fn tensor_names(&self) -> Result<&TensorNames, ModelError> {
        self.names
            .get_or_try_init(|| async {
                let (input, output) = match &self.overrides {
                    (Some(i), Some(o)) => (Some(i.clone()), Some(o.clone())),
                    (i, o) => {
                        let meta = self.metadata().await?;
                        (i.clone().or(meta.0), o.clone().or(meta.1))
                    }
                };
                let names = TensorNames {
                    input: input.unwrap_or_else(|| DEFAULT_INPUT.to_owned()),
                    output: output.unwrap_or_else(|| DEFAULT_OUTPUT.to_owned()),
                };
                tracing::info!(model = %self.base, input = %names.input, output = %names.output, "remote model tensors");
                Ok(names)
            })
            .await
    }

    /// The metadata's input and probability output, if it names them. A server that cannot be
    /// reached is an error (retried on the next call); one without metadata gives `None`s.
    async fn metadata(&self) -> Result<(Option<String>, Option<String>), ModelError> {
        #[derive(Deserialize)]
        struct Tensor {
            name: String,
        }
        #[derive(Deserialize)]
        struct Metadata {
            #[serde(default)]
            inputs: Vec<Tensor>,
            #[serde(default)]
            outputs: Vec<Tensor>,
        }
        let response = self
            .client
            .get(&self.base)
            .timeout(CONTROL_TIMEOUT)
            .send()
            .await
            .map_err(|e| ModelError::Unavailable(format!("model metadata: {e}")))?;
        if !response.status().is_success() {
            return Ok((None, None));
        }
        let Ok(meta) = response.json::<Metadata>().await else {
            return Ok((None, None));
        };
        let output = PROBABILITY_OUTPUTS
            .iter()
            .find(|wanted| meta.outputs.iter().any(|o| o.name == **wanted))
            .map(|s| (*s).to_owned())
            .or_else(|| match meta.outputs.as_slice() {
                [only] => Some(only.name.clone()),
                _ => None,
            });
        Ok((meta.inputs.into_iter().next().map(|t| t.name), output))
    }

    /// reqwest's own deadline for a call: twice the budget. The scoring use case abandons the
    /// call at the budget (dropping it closes the connection) and reports `timeout`; were
    /// reqwest's deadline the same, it could fire first and the outcome would read `error`.
    /// This one only bounds calls made outside the use case.
    fn backstop(&self) -> Duration {
        self.call_timeout * 2 + Duration::from_millis(10)
    }

    async fn infer(&self, features: &Features) -> Result<f64, ModelError> {
        let names = self.tensor_names().await?;
        let body = request_body(&names.input, &names.output, features.as_slice());
        let mut request = self
            .client
            .post(format!("{}/infer", self.base))
            .timeout(self.backstop())
            .header("content-type", "application/json")
            .body(body);
        if let Some(hook) = &self.headers {
            for (name, value) in hook() {
                request = request.header(name, value);
            }
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| failed(format!("inference call: {e}")))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(failed(format!(
                    "answer larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Err(failed(format!(
                "the model server answered {status}: {text}"
            )));
        }
        read_probability(&bytes, &names.output).map_err(failed)
    }
}

fn failed(message: String) -> ModelError {
    ModelError::Failed(message.into())
}

/// The inference request. JSON has no NaN, so a missing feature is sent as `null`, which
/// MLServer turns into NaN as the model expects (measured; the literal `NaN` is refused there).
/// Written by hand: it is on every request's path and has one shape.
fn request_body(input: &str, output: &str, row: &[f64]) -> String {
    let mut body = String::with_capacity(64 + row.len() * 12);
    let quoted = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let _ = write!(
        body,
        r#"{{"inputs":[{{"name":{},"shape":[1,{}],"datatype":"FP32","data":["#,
        quoted(input),
        row.len()
    );
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        if v.is_nan() {
            body.push_str("null");
        } else {
            let _ = write!(body, "{v}");
        }
    }
    let _ = write!(body, r#"]}}],"outputs":[{{"name":{}}}]}}"#, quoted(output));
    body
}

/// Reads the probability from an inference response: the output named `output` (or the only
/// output); with two values per row, the second (P(label 1)); with one, that value.
fn read_probability(bytes: &[u8], output: &str) -> Result<f64, String> {
    #[derive(Deserialize)]
    struct Output {
        name: String,
        #[serde(default)]
        shape: Vec<i64>,
        data: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Response {
        outputs: Vec<Output>,
    }
    let response: Response =
        serde_json::from_slice(bytes).map_err(|e| format!("not an inference response: {e}"))?;
    let chosen = match response.outputs.iter().find(|o| o.name == output) {
        Some(o) => o,
        None => match response.outputs.as_slice() {
            [only] => only,
            _ => return Err(format!("no output named {output:?} in the answer")),
        },
    };
    let mut values = Vec::new();
    flatten(&chosen.data, &mut values)?;
    let width = chosen.shape.last().copied().unwrap_or(values.len() as i64);
    match (values.as_slice(), width) {
        ([_, p1], 2) => Ok(*p1),
        ([p], 1 | 0) => Ok(*p),
        _ => Err(format!(
            "output {:?} has shape {:?} and {} values; one row of 1 or 2 probabilities is expected",
            chosen.name,
            chosen.shape,
            values.len()
        )),
    }
}

/// Row-major values of a flat or nested JSON array.
fn flatten(value: &serde_json::Value, out: &mut Vec<f64>) -> Result<(), String> {
    match value {
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out)),
        serde_json::Value::Number(n) => {
            out.push(n.as_f64().ok_or("a number out of range")?);
            Ok(())
        }
        other => Err(format!("a non-numeric value in the output: {other}")),
    }
}

#[async_trait]
impl FraudModel for RemoteModel {
    fn identity(&self) -> ModelIdentity {
        self.identity.clone()
    }

    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError> {
        Ok(Prediction {
            probability: self.infer(features).await?,
            model: self.identity.clone(),
        })
    }

    /// Ready when the server says the model is (`GET {base}/ready` answers 200).
    async fn check(&self) -> Result<(), ModelError> {
        let response = self
            .client
            .get(format!("{}/ready", self.base))
            .timeout(CONTROL_TIMEOUT)
            .send()
            .await
            .map_err(|e| ModelError::Unavailable(format!("model server: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ModelError::Unavailable(format!(
                "the model server says {} for {}/ready",
                response.status(),
                self.base
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_model_and_bad_ones_say_what_is_expected() {
        let m = RemoteModel::new(
            "http://127.0.0.1:8080/v2/models/fraud/versions/3",
            Duration::from_millis(100),
        )
        .expect("valid");
        assert_eq!(
            (m.identity.name.as_str(), m.identity.version.as_str()),
            ("fraud", "3")
        );
        let m = RemoteModel::new(
            "https://models.internal:443/v2/models/fraud/?output=probabilities",
            Duration::from_millis(100),
        )
        .expect("valid");
        assert_eq!(m.overrides, (None, Some("probabilities".to_owned())));
        assert_eq!(m.base, "https://models.internal:443/v2/models/fraud");
        for (url, expected) in [
            ("ftp://h/v2/models/x", "http:// or https://"),
            ("http://h:1/v1/models/x", "/v2/models/NAME"),
            ("http:///v2/models/x", "no host"),
            ("http://h:1/v2/models/x?colour=red", "input=NAME"),
        ] {
            let message = RemoteModel::new(url, Duration::from_millis(100))
                .expect_err(url)
                .to_string();
            assert!(message.contains(expected), "{url}: {message}");
        }
    }

    #[test]
    fn the_request_carries_one_fp32_row_with_null_for_missing_values() {
        let body = request_body("features", "predict_proba", &[1.5, f64::NAN, 0.0]);
        assert_eq!(
            body,
            r#"{"inputs":[{"name":"features","shape":[1,3],"datatype":"FP32","data":[1.5,null,0]}],"outputs":[{"name":"predict_proba"}]}"#
        );
    }

    #[test]
    fn the_probability_is_the_second_column_of_a_two_column_row_or_the_only_value() {
        let two = br#"{"model_name":"m","outputs":[{"name":"predict_proba","shape":[1,2],"datatype":"FP64","data":[0.25,0.75]}]}"#;
        assert_eq!(read_probability(two, "predict_proba"), Ok(0.75));
        let nested = br#"{"outputs":[{"name":"label","shape":[1],"data":[1]},{"name":"probabilities","shape":[1,2],"data":[[0.9,0.1]]}]}"#;
        assert_eq!(read_probability(nested, "probabilities"), Ok(0.1));
        let one = br#"{"outputs":[{"name":"score","shape":[1,1],"data":[0.3]}]}"#;
        assert_eq!(
            read_probability(one, "predict_proba"),
            Ok(0.3),
            "the only output is read"
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_guesses() {
        for body in [
            &b"not json"[..],
            br#"{"outputs":[]}"#,
            br#"{"outputs":[{"name":"a","data":[0.1]},{"name":"b","data":[0.2]}]}"#,
            br#"{"outputs":[{"name":"predict_proba","shape":[2,2],"data":[0.1,0.9,0.2,0.8]}]}"#,
            br#"{"outputs":[{"name":"predict_proba","shape":[1,2],"data":["x","y"]}]}"#,
        ] {
            assert!(
                read_probability(body, "predict_proba").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
