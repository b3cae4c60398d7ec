//! A sanitizer that misbehaves on purpose, so the host's limits are tested
//! against a real component. Its settings pick the behaviour:
//!
//! - `"loop"`: never returns (the deadline must stop it);
//! - `"alloc"`: allocates without bound (the memory cap must refuse it);
//! - `"trap"`: panics, which traps the instance;
//! - `"counter"`: returns how many times this instance's static counter was
//!   bumped, as an annotation; with a fresh instance per call it is always 1;
//! - `"garbage"`: returns text that is not JSON;
//! - `"error"`: returns an error;
//! - `"env"`: returns the environment variable `PATH` and
//!   the wall clock's seconds, to show what a guest sees without grants;
//! - anything else: echoes the object.
//!
//! A settings check refuses `"refuse"`, to test bad settings at load.

use std::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({
    inline: "
        package plumbline:misbehave;
        world misbehave {
            include plumbline:policy/sanitizer@0.1.0;
            export plumbline:policy/settings@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Misbehave;

impl Guest for Misbehave {
    fn sanitize(object: String, settings: String) -> Result<Option<String>, String> {
        match settings.trim_matches('"') {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("misbehave was told to trap"),
            "counter" => {
                let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Some(format!(
                    r#"{{"kind":"Counter","metadata":{{"annotations":{{"calls":"{n}"}}}}}}"#
                )))
            }
            "garbage" => Ok(Some("{ this is not json".to_owned())),
            "error" => Err("misbehave was told to fail".to_owned()),
            "env" => {
                let value = std::env::var("PATH").unwrap_or_default();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                Ok(Some(format!(
                    r#"{{"kind":"Env","data":{{"value":"{value}","now":"{now}"}}}}"#
                )))
            }
            _ => Ok(Some(object)),
        }
    }
}

impl exports::plumbline::policy::settings::Guest for Misbehave {
    fn validate_settings(settings: String) -> Result<(), String> {
        if settings.contains("refuse") {
            return Err("misbehave refuses these settings".to_owned());
        }
        Ok(())
    }
}

export!(Misbehave);
