//! Where each watch resumes, kept with the queue: a daemon killed at any
//! moment starts again from the versions it saved instead of listing
//! everything, and the watch replays what changed while it was down, each
//! change under its own event.
//!
//! A version is saved only after the events before it were submitted
//! (appended to the queue), after every batch: a restart replays at most
//! the last batch, whose events the queue holds already with the same
//! content, so nothing is lost and no change is committed twice. A
//! listing's version is saved once its seed ended, so that a seed cut
//! short is done again whole, its orphans pruned.
//!
//! Saved versions hold only for the configuration and the resources they
//! were saved under: a digest of both is saved beside them, and a start
//! under another lists everything, as a start without versions does.

use crate::mirror::Intake;
use crate::model::GroupResource;
use crate::model::digest::short_digest;
use crate::queue::QueueError;
use std::collections::BTreeMap;

/// The key of the digest of what the versions were saved under (no
/// resource's key starts with `~`).
const SCOPE: &str = "~scope";

/// The versions saved, as the source knows them.
#[derive(Debug, Default)]
pub struct SavedVersions {
    saved: BTreeMap<String, String>,
}

/// The key a resource's version is saved under.
fn key(id: &GroupResource) -> String {
    if id.group.is_empty() {
        id.resource.clone()
    } else {
        format!("{}.{}", id.resource, id.group)
    }
}

/// A digest of the configuration `config` and the resources followed.
pub fn scope_digest<'a>(config: &str, ids: impl Iterator<Item = &'a GroupResource>) -> String {
    let mut text = config.to_owned();
    for id in ids {
        text.push('\n');
        text.push_str(&key(id));
    }
    hex::encode(short_digest(text.as_bytes()))
}

impl SavedVersions {
    /// What `intake`'s queue holds for this source.
    pub fn load(intake: &dyn Intake) -> Result<SavedVersions, QueueError> {
        Ok(SavedVersions {
            saved: intake.cursors()?,
        })
    }

    /// The saved version of each of `ids` that has one, if they were saved
    /// under the scope `digest`; none otherwise.
    pub fn resumable<'a>(
        &self,
        digest: &str,
        ids: impl Iterator<Item = &'a GroupResource>,
    ) -> BTreeMap<GroupResource, String> {
        if self.saved.get(SCOPE).map(String::as_str) != Some(digest) {
            return BTreeMap::new();
        }
        ids.filter_map(|id| Some((id.clone(), self.saved.get(&key(id))?.clone())))
            .collect()
    }

    /// Saves the versions `now` (`None`: forget it) and, if given, the
    /// scope digest; only what differs from what is saved is written.
    pub fn save<'a>(
        &mut self,
        intake: &dyn Intake,
        now: impl Iterator<Item = (&'a GroupResource, Option<&'a str>)>,
        digest: Option<&str>,
    ) -> Result<(), QueueError> {
        let mut changes: Vec<(String, Option<String>)> = now
            .map(|(id, version)| (key(id), version.map(str::to_owned)))
            .filter(|(key, version)| self.saved.get(key) != version.as_ref())
            .collect();
        if let Some(digest) =
            digest.filter(|d| self.saved.get(SCOPE).map(String::as_str) != Some(d))
        {
            changes.push((SCOPE.to_owned(), Some(digest.to_owned())));
        }
        if changes.is_empty() {
            return Ok(());
        }
        intake.save_cursors(&changes)?;
        for (key, version) in changes {
            match version {
                Some(version) => self.saved.insert(key, version),
                None => self.saved.remove(&key),
            };
        }
        Ok(())
    }

    /// Forgets the versions of resources not in `followed`.
    pub fn keep_only(
        &mut self,
        intake: &dyn Intake,
        followed: &[GroupResource],
    ) -> Result<(), QueueError> {
        let keys: Vec<String> = followed.iter().map(key).collect();
        let gone: Vec<(String, Option<String>)> = self
            .saved
            .keys()
            .filter(|k| k.as_str() != SCOPE && !keys.contains(k))
            .map(|k| (k.clone(), None))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        intake.save_cursors(&gone)?;
        for (key, _) in gone {
            self.saved.remove(&key);
        }
        Ok(())
    }
}
