//! Fuzzes the ONNX loader: a model file is input too. `OnnxModel::from_bytes` on arbitrary
//! bytes must return a model or an error; a panic, an abort or a hang (libFuzzer's `-timeout`,
//! set by `cargo xtask fuzz`) is a finding. A model that loads has already scored the probe rows
//! of its validation, so the evaluator is exercised too. Seeded with the shipped model and the
//! parity fixtures. Run with `cargo xtask fuzz --target onnx_model`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(model) = antifraud_model::OnnxModel::from_bytes(bytes, "fuzz") {
        // Whatever loads names an output to read the probability from.
        assert!(!model.output_description().is_empty());
    }
});
