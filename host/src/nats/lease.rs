//! Leases in a key-value bucket: a key one holder creates and keeps
//! renewing, which lapses when it stops (the bucket's age limit removes
//! it), so that another can take it. Partition claims, the source's
//! leader and the roll of live replicas are all leases.
//!
//! A holder must not act on a lease it may have lost: [`Lease::held`] is
//! false once a renewal failed, and once the last renewal is older than
//! two thirds of the lease, which a process paused past its lease (a
//! stopped container, a long GC-like stall) sees the moment it wakes,
//! before its renewal task had a chance to run.

use async_nats::jetstream::kv;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

/// A lease held: renewed by a task on the runtime until dropped, and
/// given up (the key purged) then.
pub struct Lease {
    key: String,
    bucket: kv::Store,
    handle: Handle,
    state: Arc<State>,
    renewing: AbortHandle,
}

/// What the renewal task tells the holder.
struct State {
    /// When the lease was taken.
    start: Instant,
    /// The last renewal, in milliseconds since `start`.
    renewed: AtomicU64,
    /// A renewal failed: another may hold the key now.
    lost: AtomicBool,
    /// The revision written last.
    revision: AtomicU64,
    ttl: Duration,
}

impl State {
    fn held(&self) -> bool {
        let renewed = Duration::from_millis(self.renewed.load(Ordering::Acquire));
        let since = self.start.elapsed().saturating_sub(renewed);
        !self.lost.load(Ordering::Acquire) && since < self.ttl * 2 / 3
    }
}

impl Lease {
    /// Takes `key` in `bucket` (whose age limit is `ttl`) for `holder`:
    /// `Ok(None)` while another holds it.
    pub async fn take(
        handle: &Handle,
        bucket: &kv::Store,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, super::Error> {
        let revision = match bucket.create(key, holder.to_owned().into()).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let state = Arc::new(State {
            start: Instant::now(),
            renewed: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            revision: AtomicU64::new(revision),
            ttl,
        });
        let renewing = handle
            .spawn(renew(
                bucket.clone(),
                key.to_owned(),
                holder.to_owned(),
                state.clone(),
            ))
            .abort_handle();
        Ok(Some(Lease {
            key: key.to_owned(),
            bucket: bucket.clone(),
            handle: handle.clone(),
            state,
            renewing,
        }))
    }

    /// Whether the lease surely still holds: renewed in time, never
    /// refused.
    pub fn held(&self) -> bool {
        self.state.held()
    }

    /// A check of [`Lease::held`] that outlives a borrow of the lease.
    pub fn checker(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move || state.held()
    }
}

/// Renews `key` every third of the lease, over the revision it wrote
/// last: a write in between (the key lapsed and another took it) makes
/// the renewal fail, and the lease lost for good. Any other failure (the
/// cluster electing a leader for the bucket) is tried again soon; the
/// lease stops being [`Lease::held`] if that lasts.
async fn renew(bucket: kv::Store, key: String, holder: String, state: Arc<State>) {
    let mut next = state.ttl / 3;
    loop {
        tokio::time::sleep(next).await;
        let revision = state.revision.load(Ordering::Acquire);
        match bucket.update(&key, holder.clone().into(), revision).await {
            Ok(written) => {
                state.revision.store(written, Ordering::Release);
                let now = u64::try_from(state.start.elapsed().as_millis()).unwrap_or(u64::MAX);
                state.renewed.store(now, Ordering::Release);
                next = state.ttl / 3;
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(%error, key, "a lease lapsed and another holds it now");
                state.lost.store(true, Ordering::Release);
                return;
            }
            Err(error) => {
                tracing::debug!(%error, key, "a lease could not be renewed yet; trying again");
                next = state.ttl / 12;
            }
        }
    }
}

/// Who holds `key` in `bucket` now, if anyone.
pub async fn holder(bucket: &kv::Store, key: &str) -> Result<Option<String>, super::Error> {
    let value = bucket.get(key).await?;
    Ok(value
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        if self.state.lost.load(Ordering::Acquire) {
            return;
        }
        // Given up before the drop returns, so that a take right after
        // finds the key free; only over the revision written last, so
        // that a key another took since stays theirs.
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let revision = self.state.revision.load(Ordering::Acquire);
        let purge = async move { bucket.purge_expect_revision(&key, Some(revision)).await };
        if let Err(error) = super::block_on(&self.handle, purge) {
            tracing::warn!(%error, key = self.key, "a lease could not be given up; it lapses");
        }
    }
}

/// A key written again every third of the bucket's age limit while its
/// owner lives: no one else writes it, so unlike a [`Lease`] it needs no
/// revision, and a pause only makes it lapse until the next beat.
pub struct Heartbeat {
    key: String,
    bucket: kv::Store,
    handle: Handle,
    beating: AbortHandle,
}

impl Heartbeat {
    /// Writes `key` in `bucket` (whose age limit is `ttl`) now, and every
    /// third of `ttl` from now on; a write that fails (the cluster
    /// electing a leader) is tried again sooner.
    pub fn start(handle: &Handle, bucket: &kv::Store, key: &str, ttl: Duration) -> Heartbeat {
        let (store, name) = (bucket.clone(), key.to_owned());
        let beating = handle
            .spawn(async move {
                loop {
                    let next = match store.put(&name, "alive".into()).await {
                        Ok(_) => ttl / 3,
                        Err(error) => {
                            tracing::warn!(%error, key = name, "a heartbeat could not be written");
                            ttl / 12
                        }
                    };
                    tokio::time::sleep(next).await;
                }
            })
            .abort_handle();
        Heartbeat {
            key: key.to_owned(),
            bucket: bucket.clone(),
            handle: handle.clone(),
            beating,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.beating.abort();
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let _ = super::block_on(&self.handle, async move { bucket.purge(&key).await });
    }
}
