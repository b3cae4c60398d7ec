//! What the benches share: medians, ratio lines, and `oras pull` (the ORAS
//! Python client the test command installs in `target/test-tools`) as a
//! baseline.

#![allow(dead_code)] // each bench uses some of it

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The median of `rounds` runs of `run`.
pub fn median(rounds: usize, mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..rounds.max(1)).map(|_| run()).collect();
    times.sort();
    times[times.len() / 2]
}

/// One line: what was measured against its baseline, as a ratio.
pub fn report(what: &str, measured: Duration, baseline_name: &str, baseline: Duration) {
    println!(
        "{what}: {measured:.2?} vs {baseline_name}: {baseline:.2?} → {:.2}×",
        measured.as_secs_f64() / baseline.as_secs_f64()
    );
}

/// The median time of `rounds` `oras pull`s of `reference` from the
/// plain-HTTP registry at `host`, timed inside Python (so the
/// interpreter's start is not counted); none without the test tools.
pub fn oras_pull(host: &str, reference: &str, rounds: usize) -> Option<Duration> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/bin/python");
    let script = format!(
        "import oras.client, tempfile, time, statistics\n\
         c = oras.client.OrasClient(hostname='{host}', insecure=True)\n\
         times = []\n\
         for _ in range({rounds}):\n\
         \x20   d = tempfile.mkdtemp()\n\
         \x20   t = time.perf_counter(); c.pull(target='{reference}', outdir=d); times.append(time.perf_counter() - t)\n\
         print(statistics.median(times))\n"
    );
    let out = Command::new(python).arg("-c").arg(script).output().ok()?;
    let seconds: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(Duration::from_secs_f64(seconds))
}

/// The address a starting daemon says it listens on, read from its
/// standard error (the rest of which is drained, so it never blocks).
pub fn listening_address(stderr: std::process::ChildStderr) -> String {
    use std::io::BufRead as _;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the daemon says where it listens")
            .unwrap();
        if let Some((_, rest)) = line.split_once(" on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    address
}
