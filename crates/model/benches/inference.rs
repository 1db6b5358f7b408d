//! Per-row cost of feature extraction and of every in-process model: criterion for the mean,
//! then each call timed alone into an HDR histogram for the tail (p50/p99/p99.9), which is what
//! the 20 µs p99 budget of an in-process model is about; and the shipped model cold, with every
//! cache evicted between rows, as a request finds it after the rest of the service has run. Run
//! with `cargo xtask bench-model`.

#![allow(clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use antifraud_domain::{FEATURE_NAMES, Features, FraudModel, WindowStat, WindowStats};
use antifraud_model::{BuiltinModel, OnnxModel};
use criterion::Criterion;
use hdrhistogram::Histogram;
use time::macros::datetime;

/// Rows a model sees: a spread of realistic values, some with missing risk scores.
fn rows() -> Vec<Features> {
    (0..1024)
        .map(|i| {
            let x = f64::from(i);
            let mut v: Vec<f64> = (0..FEATURE_NAMES.len())
                .map(|j| ((x * 0.37 + j as f64 * 1.7).sin() + 1.0) * 3.0)
                .collect();
            if i % 7 == 0 {
                v[12] = f64::NAN;
            }
            Features::from_slice(&v).expect("full width")
        })
        .collect()
}

fn models() -> Vec<(String, OnnxModel)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut models = vec![(
        "fraud-gbdt (shipped, 300 trees)".to_owned(),
        OnnxModel::shipped().expect("loads"),
    )];
    for name in [
        "sklearn-logistic",
        "sklearn-random-forest",
        "sklearn-hist-gradient-boosting",
        "lightgbm",
        "xgboost",
    ] {
        models.push((
            name.to_owned(),
            OnnxModel::load(&dir.join(format!("{name}.onnx"))).expect("loads"),
        ));
    }
    models
}

fn transaction() -> (antifraud_domain::Transaction, WindowStats) {
    let tx =
        antifraud_store_conformance::transaction("c", "t", 120.0, datetime!(2026-11-25 12:00 UTC));
    let stats = WindowStats::from_windows(std::array::from_fn(|i| {
        WindowStat::exact(3 + i as u64, 400_000 * (i as u128 + 1))
    }));
    (tx, stats)
}

fn criterion_benches(c: &mut Criterion, rows: &[Features], models: &[(String, OnnxModel)]) {
    let (tx, stats) = transaction();
    c.bench_function("features/extract", |b| {
        b.iter(|| Features::new(black_box(&tx), black_box(&stats)))
    });
    let mut i = 0;
    c.bench_function("model/builtin-logistic", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            BuiltinModel::probability(black_box(&rows[i]))
        })
    });
    for (name, model) in models {
        c.bench_function(&format!("model/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % rows.len();
                model.probability(black_box(&rows[i])).expect("scores")
            })
        });
    }
    // Through the port (inline: the shipped model is under the inline threshold), and the same
    // evaluation handed to the blocking pool: what the hop would cost.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let shipped = &models[0].1;
    c.bench_function("model/fraud-gbdt via FraudModel::predict (inline)", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % rows.len();
            shipped.predict(&rows[i])
        })
    });
    c.bench_function(
        "model/fraud-gbdt on the blocking pool (spawn_blocking)",
        |b| {
            b.to_async(&runtime).iter(|| {
                i = (i + 1) % rows.len();
                let (model, row) = (shipped.clone(), rows[i].clone());
                async move {
                    tokio::task::spawn_blocking(move || model.probability(&row))
                        .await
                        .expect("not cancelled")
                }
            })
        },
    );
}

/// Each of `calls` calls timed alone into a histogram (nanoseconds), over the rows in turn,
/// with `prepare` run untimed before each.
fn timed(
    rows: &[Features],
    calls: usize,
    mut prepare: impl FnMut(),
    mut call: impl FnMut(&Features) -> f64,
) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
    for i in 0..calls {
        prepare();
        let row = &rows[i % rows.len()];
        let started = Instant::now();
        black_box(call(black_box(row)));
        histogram
            .record(started.elapsed().as_nanos() as u64)
            .expect("in range");
    }
    histogram
}

/// A table row: p50, p99, p99.9 and max in microseconds.
fn print_row(name: &str, histogram: &Histogram<u64>) {
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.1} |",
        us(0.5),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 1000.0
    );
}

const TABLE_HEAD: &str = "| p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|";

/// Each call timed alone: the tail, not the mean.
fn tail_table(rows: &[Features], models: &[(String, OnnxModel)]) {
    const CALLS: usize = 200_000;
    println!("\n| model {TABLE_HEAD}");
    print_row(
        "builtin-logistic",
        &timed(rows, CALLS, || {}, BuiltinModel::probability),
    );
    for (name, model) in models {
        let call = |row: &Features| model.probability(row).expect("scores");
        print_row(name, &timed(rows, CALLS, || {}, call));
    }
}

/// The shipped model warm (rows back to back) and cold: before each row, a buffer twice the
/// size of the last-level cache is written, so the model's nodes come from memory, as they may
/// in the service, where parsing, the store and the HTTP stack run between two rows.
fn cold_table(rows: &[Features], shipped: &OnnxModel) {
    const CALLS: usize = 2_000;
    let mut evict = vec![0u8; 2 * last_level_cache_bytes()];
    let call = |row: &Features| shipped.probability(row).expect("scores");
    println!("\n| fraud-gbdt (shipped) {TABLE_HEAD}");
    print_row("warm", &timed(rows, CALLS, || {}, call));
    let name = format!("cold ({} MiB written between rows)", evict.len() >> 20);
    let evict_all = || {
        // One write per cache line is enough to evict it.
        for line in evict.chunks_mut(64) {
            line[0] = line[0].wrapping_add(1);
        }
        black_box(&evict);
    };
    print_row(&name, &timed(rows, CALLS, evict_all, call));
}

/// The largest cache's size from sysfs (Linux), else 64 MiB.
fn last_level_cache_bytes() -> usize {
    (0..8)
        .filter_map(|index| {
            let path = format!("/sys/devices/system/cpu/cpu0/cache/index{index}/size");
            let text = std::fs::read_to_string(path).ok()?;
            let text = text.trim();
            let (digits, scale) = match text.strip_suffix('K') {
                Some(kib) => (kib, 1 << 10),
                None => match text.strip_suffix('M') {
                    Some(mib) => (mib, 1 << 20),
                    None => (text, 1),
                },
            };
            digits.parse::<usize>().ok().map(|n| n * scale)
        })
        .max()
        .unwrap_or(64 << 20)
}

fn main() {
    let rows = rows();
    let models = models();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &rows, &models);
    criterion.final_summary();
    tail_table(&rows, &models);
    cold_table(&rows, &models[0].1);
}
