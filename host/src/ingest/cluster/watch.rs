//! One resource's Watch, on the daemon's runtime: from a resourceVersion,
//! with bookmarks, again from the last version seen whenever the server
//! ends the stream, with backoff on errors, until the version is gone
//! (410), when the resource must be listed again.
//!
//! What it sees goes to the source's thread as [`Watched`] messages,
//! tagged with the watch's generation: a watch replaced by a new listing
//! may still have messages in flight, which the source then drops.

use super::convert::event_of;
use crate::model::{Event, GroupResource, Operation};
use futures_util::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, WatchEvent, WatchParams};
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// Longest wait between two tries of a failing watch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long the server is asked to keep one watch open; the watch is
/// made again from the last version when it ends.
const WATCH_SECONDS: u32 = 290;

/// What a watch tells the source.
#[derive(Debug)]
pub enum Watched {
    /// An object changed; `version` is where a watch would resume after it.
    Event {
        /// The resource.
        resource: GroupResource,
        /// The watch's generation.
        generation: u64,
        /// The change (boxed: the other messages are small).
        event: Box<Event>,
        /// The resourceVersion after it.
        version: String,
    },
    /// Nothing changed up to `version` (a bookmark).
    Cursor {
        /// The resource.
        resource: GroupResource,
        /// The watch's generation.
        generation: u64,
        /// The resourceVersion.
        version: String,
    },
    /// The version the watch resumes from is gone: list again.
    Gone {
        /// The resource.
        resource: GroupResource,
        /// The watch's generation.
        generation: u64,
    },
    /// The watch failed and is tried again after a pause.
    Failed {
        /// The resource.
        resource: GroupResource,
        /// The watch's generation.
        generation: u64,
        /// Why, for the operator.
        error: String,
        /// Whether the server refused the daemon (403): its permissions,
        /// not the server, must change.
        forbidden: bool,
    },
}

/// A watch of one resource, to be run on the runtime.
pub struct Watch {
    /// The resource, as the client reaches it.
    pub api: Api<DynamicObject>,
    /// What discovery says of it.
    pub resource: ApiResource,
    /// Its generation: bumped by each listing of the resource.
    pub generation: u64,
    /// Where it starts: the listing's resourceVersion.
    pub version: String,
}

impl Watch {
    fn id(&self) -> GroupResource {
        GroupResource::new(&self.resource.group, &self.resource.plural)
    }

    /// Watches until the version is gone or the source stops listening.
    pub async fn run(mut self, out: Sender<Watched>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let params = WatchParams {
                bookmarks: true,
                timeout: Some(WATCH_SECONDS),
                ..WatchParams::default()
            };
            let stream = match self.api.watch(&params, &self.version).await {
                Ok(stream) => stream,
                Err(kube::Error::Api(status)) if status.code == 410 => {
                    return self.gone(&out).await;
                }
                Err(error) => {
                    let forbidden = matches!(&error, kube::Error::Api(s) if s.code == 403);
                    if !self.failed(&out, error.to_string(), forbidden).await {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let mut stream = std::pin::pin!(stream);
            let mut failed = false;
            while let Some(item) = stream.next().await {
                let (operation, object) = match item {
                    Ok(WatchEvent::Added(object)) => (Operation::Create, object),
                    Ok(WatchEvent::Modified(object)) => (Operation::Update, object),
                    Ok(WatchEvent::Deleted(object)) => (Operation::Delete, object),
                    Ok(WatchEvent::Bookmark(bookmark)) => {
                        backoff = Duration::from_secs(1);
                        self.version = bookmark.metadata.resource_version;
                        let cursor = Watched::Cursor {
                            resource: self.id(),
                            generation: self.generation,
                            version: self.version.clone(),
                        };
                        if out.send(cursor).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(WatchEvent::Error(status)) if status.code == 410 => {
                        return self.gone(&out).await;
                    }
                    Ok(WatchEvent::Error(status)) => {
                        let forbidden = status.code == 403;
                        if !self.failed(&out, status.to_string(), forbidden).await {
                            return;
                        }
                        failed = true;
                        break;
                    }
                    Err(error) => {
                        if !self.failed(&out, error.to_string(), false).await {
                            return;
                        }
                        failed = true;
                        break;
                    }
                };
                // Only a watch that delivers is a watch that works: one
                // answered with an error at once must not be retried at once.
                backoff = Duration::from_secs(1);
                if let Some(version) = &object.metadata.resource_version {
                    self.version.clone_from(version);
                }
                let Some(mut event) = event_of(&self.resource, &object, operation) else {
                    continue;
                };
                event.watched = true;
                let message = Watched::Event {
                    resource: self.id(),
                    generation: self.generation,
                    event: Box::new(event),
                    version: self.version.clone(),
                };
                if out.send(message).await.is_err() {
                    return;
                }
            }
            // The server ended the watch: again from the last version at
            // once; after an error, after a pause that grows.
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    async fn gone(&self, out: &Sender<Watched>) {
        let gone = Watched::Gone {
            resource: self.id(),
            generation: self.generation,
        };
        let _ = out.send(gone).await;
    }

    /// Says the watch failed; `false` when no one listens any more.
    async fn failed(&self, out: &Sender<Watched>, error: String, forbidden: bool) -> bool {
        let failed = Watched::Failed {
            resource: self.id(),
            generation: self.generation,
            error,
            forbidden,
        };
        out.send(failed).await.is_ok()
    }
}
