//! Fuzzes the request pipeline (parse, then validate) with arbitrary bodies: the answer must be
//! a validated transaction or a 400/422 problem+json; a panic, a 5xx or a malformed problem is a
//! finding. Run with `cargo xtask fuzz`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // A fixed reception time, so that a finding replays the same way.
    let now = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("a valid instant");
    if let Err(refusal) = antifraud_app::intake::read_transaction(body, now) {
        assert!(
            matches!(refusal.status, 400 | 422),
            "status {}: {}",
            refusal.status,
            refusal.body
        );
        let problem: serde_json::Value =
            serde_json::from_str(&refusal.body).expect("the problem is JSON");
        assert_eq!(problem["status"], refusal.status);
    }
});
