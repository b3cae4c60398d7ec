//! The folder of manifests as a [`Source`]: a seed reads the whole folder
//! afresh; following, it looks again every interval and hands on what
//! changed; asked to list again, it seeds again.

use super::{Changes, Follower, SourceOptions};
use crate::ingest::source::{Context, SeedReport, Source, SourceError};
use crate::mirror::{Listing, SeedScope};
use crate::model::Event;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A folder of manifests, followed.
pub struct DirectorySource {
    dir: PathBuf,
    options: SourceOptions,
    interval: Duration,
    follower: Follower,
    /// Errors said in the last look: said again only if they go and come
    /// back.
    reported: BTreeSet<String>,
}

impl DirectorySource {
    /// The folder `dir`, read as `options` say, looked at every
    /// `interval` when followed.
    pub fn new(dir: &Path, options: SourceOptions, interval: Duration) -> DirectorySource {
        DirectorySource {
            follower: Follower::with_options(dir, options.clone()),
            dir: dir.to_owned(),
            options,
            interval,
            reported: BTreeSet::new(),
        }
    }

    /// One look, its events routed as they come: what changed, and
    /// whether every event was routed. The folder is read on a thread of
    /// its own, a chunk ahead of routing: reading and parsing files and
    /// routing them through the policies each take most of a core at the
    /// size of a seed, and one waited for the other.
    fn look(&mut self, context: &Context) -> Result<(Changes, bool), SourceError> {
        let mut failure = None;
        let mut routed = true;
        let follower = &mut self.follower;
        let changes = std::thread::scope(|scope| -> Result<Changes, SourceError> {
            // One chunk waits while the next is read: memory stays bounded.
            let (chunks, read) = std::sync::mpsc::sync_channel::<Vec<Event>>(1);
            let reader = std::thread::Builder::new()
                .name("directory read".into())
                .spawn_scoped(scope, move || {
                    follower.poll(&mut |events| {
                        // Only if routing is gone (it failed): nothing to do.
                        let _ = chunks.send(events);
                    })
                })
                .map_err(SourceError::Thread)?;
            // Drained to the end even after a failure, so the reader
            // never waits for a routing that will not come.
            for events in read {
                if failure.is_some() {
                    continue;
                }
                match context.intake.submit(&events) {
                    Ok(routing) => {
                        for error in &routing.errors {
                            context.notices.error(error);
                        }
                        routed &= routing.errors.is_empty();
                    }
                    Err(error) => failure = Some(error),
                }
            }
            // A panic while reading is the reader's own: raised here.
            Ok(reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })?;
        if let Some(error) = failure {
            return Err(error.into());
        }
        context.intake.end_pass();
        self.report(&changes, context);
        Ok((changes, routed))
    }

    fn report(&mut self, changes: &Changes, context: &Context) {
        // A FIFO or a link out of the folder is met on every look: said
        // once while it lasts, again if it goes and comes back.
        let now: BTreeSet<String> = changes.errors.iter().map(|e| e.to_string()).collect();
        for error in now.difference(&self.reported) {
            context.notices.error(error);
        }
        self.reported = now;
        for warning in &changes.warnings {
            context.notices.warning(warning);
        }
        for note in &changes.skipped {
            tracing::info!("{note}; skipped");
        }
        if !changes.skipped.is_empty() {
            context.notices.note(&format_args!(
                "{} document(s) that are not cluster objects were skipped (--log info names them)",
                changes.skipped.len()
            ));
        }
    }
}

impl Source for DirectorySource {
    fn name(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn seed(&mut self, scope: &SeedScope, context: &Context) -> Result<SeedReport, SourceError> {
        // A fresh follower lists everything, and knows what unreadable
        // files held from the index of the last look.
        self.follower = Follower::with_options(&self.dir, self.options.clone());
        self.reported.clear();
        let seed = context.intake.begin_seed(scope)?;
        let (changes, routed) = self.look(context)?;
        let complete = changes.is_complete();
        let listing = Listing {
            complete,
            held_back: changes.held_back.clone(),
            deleted_by: self.options.actor.clone(),
        };
        context.intake.end_seed(seed, &listing)?;
        Ok(SeedReport {
            objects: changes.events,
            from: format!("{} file(s)", changes.files),
            unread: changes.errors.len(),
            complete,
            routed,
        })
    }

    fn follow(&mut self, context: &Context) -> Result<(), SourceError> {
        tracing::info!("following {}", self.dir.display());
        loop {
            context.control.wait(self.interval);
            if context.control.stopped() {
                return Ok(());
            }
            if let Some(scope) = context.control.take_relist() {
                let report = self.seed(&scope, context)?;
                tracing::info!(
                    objects = report.objects,
                    "listed {} again",
                    self.dir.display()
                );
                continue;
            }
            let (changes, _) = self.look(context)?;
            if changes.events > 0 {
                tracing::info!(events = changes.events, "the folder changed");
            }
        }
    }
}
