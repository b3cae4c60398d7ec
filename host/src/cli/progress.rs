//! Progress of long work: bars on a terminal, a plain line every few
//! seconds elsewhere (logs, CI). Both read the daemon's metrics, so what
//! the operator watches is what `/metrics` reports.

use crate::queue::Partition;
use crate::telemetry::metrics::SourceLabels;
use crate::telemetry::{Metrics, RepoLabels};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a plain progress line is printed when not on a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// A running progress display.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What is shown.
struct Watched {
    metrics: Arc<Metrics>,
    source: SourceLabels,
    partitions: Vec<(String, RepoLabels)>,
}

impl Watched {
    fn scanned(&self) -> u64 {
        self.metrics
            .objects_scanned
            .get_or_create(&self.source)
            .get()
    }

    fn line(&self, index: usize) -> String {
        let (_, labels) = &self.partitions[index];
        let m = &self.metrics;
        format!(
            "{} written, {} deleted, {} commit(s) pushed, {} queued",
            m.files_written.get_or_create(labels).get(),
            m.files_deleted.get_or_create(labels).get(),
            m.commits.get_or_create(labels).get(),
            m.queue_depth.get_or_create(labels).get(),
        )
    }
}

impl Progress {
    /// Shows the progress of `source` into `partitions` until finished.
    pub fn start(metrics: Arc<Metrics>, source: &str, partitions: &[Partition]) -> Progress {
        let watched = Watched {
            metrics,
            source: SourceLabels {
                source: source.to_owned(),
            },
            partitions: partitions
                .iter()
                .map(|p| (p.to_string(), RepoLabels::new(&p.repo, &p.branch)))
                .collect(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                if std::io::stderr().is_terminal() {
                    bars(&watched, &flag);
                } else {
                    plain(&watched, &flag);
                }
            })
            .ok();
        Progress { stop, thread }
    }

    /// Stops the display (its last state stays on screen).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bars(watched: &Watched, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{spinner} {prefix}: {msg}").expect("a valid template");
    let bar = |prefix: String| {
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(style.clone());
        bar.set_prefix(prefix);
        bar
    };
    let source = bar("objects read".into());
    let sinks: Vec<ProgressBar> = watched
        .partitions
        .iter()
        .map(|(name, _)| bar(name.clone()))
        .collect();
    while !stop.load(Ordering::Acquire) {
        source.set_message(watched.scanned().to_string());
        for (index, sink) in sinks.iter().enumerate() {
            sink.set_message(watched.line(index));
        }
        source.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    source.finish_with_message(watched.scanned().to_string());
    for (index, sink) in sinks.iter().enumerate() {
        sink.finish_with_message(watched.line(index));
    }
}

fn plain(watched: &Watched, stop: &AtomicBool) {
    let mut last = Instant::now();
    let mut shown = String::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() < PLAIN_EVERY {
            continue;
        }
        last = Instant::now();
        let mut text = format!("progress: {} object(s) read", watched.scanned());
        for (index, (name, _)) in watched.partitions.iter().enumerate() {
            text.push_str(&format!("; {name}: {}", watched.line(index)));
        }
        if text != shown {
            eprintln!("{text}");
            shown = text;
        }
    }
}
