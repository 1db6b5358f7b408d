//! The remote adapter against a real Open Inference Protocol server: Seldon MLServer serving a
//! scikit-learn model, started on free loopback ports and stopped by pid.
//!
//! Needs `ANTIFRAUD_TEST_MLSERVER`, the path of an `mlserver` executable; `cargo xtask test`
//! installs one (crates/model/tests/mlserver/requirements.txt) and sets it. Without it, the test
//! says so and passes: the in-process fakes in the API suite still cover the protocol.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use antifraud_domain::{Features, FraudModel};
use antifraud_model::RemoteModel;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    rows: Vec<Vec<Option<f64>>>,
    expected: Vec<f64>,
}

/// MLServer, killed by pid when dropped.
struct MlServer {
    child: Child,
    dir: PathBuf,
}

impl Drop for MlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn mlserver_scores_through_the_remote_adapter() {
    let Some(mlserver) = std::env::var_os("ANTIFRAUD_TEST_MLSERVER").map(PathBuf::from) else {
        eprintln!("ANTIFRAUD_TEST_MLSERVER is not set (cargo xtask test sets it): not run");
        return;
    };
    let python = mlserver.with_file_name("python");
    let dir = std::env::temp_dir().join(format!("antifraud-mlserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlserver/serve.py");
    let prepared = Command::new(&python)
        .arg(script)
        .arg(&dir)
        .output()
        .expect("python runs");
    assert!(
        prepared.status.success(),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let expected: Expected = serde_json::from_slice(&prepared.stdout).expect("expectations");

    let port = free_port();
    std::fs::write(
        dir.join("settings.json"),
        serde_json::json!({
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            // The default (1) forks workers that crash with current uvloop; 0 serves in-process.
            "parallel_workers": 0,
        })
        .to_string(),
    )
    .expect("settings written");
    let server = MlServer {
        child: Command::new(&mlserver)
            .arg("start")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mlserver starts"),
        dir: dir.clone(),
    };

    let model = RemoteModel::new(
        &format!("http://127.0.0.1:{port}/v2/models/fraud/versions/3"),
        Duration::from_secs(5),
    )
    .expect("a valid URL");
    let deadline = Instant::now() + Duration::from_secs(90);
    while model.check().await.is_err() {
        assert!(Instant::now() < deadline, "MLServer did not become ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let names = model.tensor_names().await.expect("resolved");
    assert_eq!(
        names.output, "predict_proba",
        "MLServer lists no outputs: its probability output"
    );
    for (row, expected) in expected.rows.iter().zip(&expected.expected) {
        let values: Vec<f64> = row.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        let features = Features::from_slice(&values).expect("full width");
        let answer = model.predict(&features).await.expect("MLServer answers");
        assert_eq!(answer.model, model.identity(), "the answer names its model");
        let p = answer.probability;
        assert!(
            (p - expected).abs() < 1e-6,
            "{p} from MLServer, {expected} from scikit-learn"
        );
    }
    assert_eq!(model.identity().version, "3");
    drop(server);
}
