//! Leases in a key-value bucket: a key one holder creates and keeps
//! renewing, which lapses when it stops (the bucket's age limit removes
//! it), so that another can take it. Partition claims and the source's
//! lead are leases; the roll of live replicas is made of heartbeats.
//!
//! A holder must not act on a lease it may have lost: [`Lease::held`] is
//! false once a renewal was refused, and once the last renewal was *sent*
//! more than two thirds of the lease ago (the server's age limit counts
//! from when it wrote the key, which is after the send), which a process
//! paused past its lease (a stopped container, a long stall) sees the
//! moment it wakes, before its renewal task had a chance to run. Once
//! false it stays false: a renewal that lands late does not make a lease
//! the holder already let go of its own again.

use async_nats::jetstream::kv;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
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
    /// The revision it was taken at.
    taken: u64,
}

/// What the renewal task tells the holder.
struct State {
    /// When the create that took the lease was sent.
    start: Instant,
    /// When the last renewal that was written had been sent, in
    /// milliseconds since `start`.
    renewed: AtomicU64,
    /// No longer held, for good.
    lost: AtomicBool,
    /// The revision written last.
    revision: AtomicU64,
    ttl: Duration,
}

impl State {
    fn held(&self) -> bool {
        if self.lost.load(Ordering::Acquire) {
            return false;
        }
        let renewed = Duration::from_millis(self.renewed.load(Ordering::Acquire));
        if self.start.elapsed().saturating_sub(renewed) < self.ttl * 2 / 3 {
            return true;
        }
        self.lost.store(true, Ordering::Release);
        false
    }

    /// Milliseconds since `start`, now.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// This process's takes, by the value each wrote. A key that still names
/// one of them whose lease is no longer held (it lapsed while NATS was out
/// of reach, or the process was paused) is this process's to take over at
/// once, instead of waiting for the bucket's age limit to remove it: the
/// old take acts on nothing any more, and the new one's revision is
/// larger.
static TAKES: Mutex<BTreeMap<String, Weak<State>>> = Mutex::new(BTreeMap::new());

fn takes() -> std::sync::MutexGuard<'static, BTreeMap<String, Weak<State>>> {
    TAKES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The revision of `key` if it names a take of this process (`process`,
/// the holder without its take's number) that is no longer held.
async fn lapsed_own(bucket: &kv::Store, key: &str, process: &str) -> Option<u64> {
    let entry = bucket.entry(key).await.ok()??;
    let value = String::from_utf8_lossy(&entry.value);
    let mine = value
        .strip_prefix(process)
        .is_some_and(|rest| rest.starts_with('#'));
    let held = takes()
        .get(value.as_ref())
        .and_then(Weak::upgrade)
        .is_some_and(|state| state.held());
    (entry.operation == kv::Operation::Put && mine && !held).then_some(entry.revision)
}

/// The revision of `key` if it holds `holder` (the value one take
/// writes): a write of ours whose answer was lost (it timed out, yet the
/// server had written it).
async fn ours(bucket: &kv::Store, key: &str, holder: &str) -> Option<u64> {
    let entry = bucket.entry(key).await.ok()??;
    (entry.operation == kv::Operation::Put && entry.value == holder.as_bytes())
        .then_some(entry.revision)
}

impl Lease {
    /// Takes `key` in `bucket` (whose age limit is `ttl`) for `holder`:
    /// `Ok(None)` while another holds it (or this holder, through another
    /// lease: each take writes a value of its own).
    pub async fn take(
        handle: &Handle,
        bucket: &kv::Store,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, super::Error> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let process = holder;
        let holder = &format!("{process}#{}", COUNT.fetch_add(1, Ordering::Relaxed));
        let start = Instant::now();
        let revision = match bucket.create(key, holder.to_owned().into()).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Ours already, from a create whose answer was lost (when
                // it was written is not known, so it is renewed at once),
                // or an earlier take of ours that lapsed.
                let found = match ours(bucket, key, holder).await {
                    Some(revision) => Some(revision),
                    None => lapsed_own(bucket, key, process).await,
                };
                let Some(revision) = found else {
                    return Ok(None);
                };
                match bucket.update(key, holder.to_owned().into(), revision).await {
                    Ok(revision) => revision,
                    Err(_) => return Ok(None),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let state = Arc::new(State {
            start,
            renewed: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            revision: AtomicU64::new(revision),
            ttl,
        });
        {
            let mut takes = takes();
            takes.retain(|_, state| state.strong_count() > 0);
            takes.insert(holder.to_owned(), Arc::downgrade(&state));
        }
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
            taken: revision,
        }))
    }

    /// Whether the lease surely still holds: renewed in time, never
    /// refused.
    pub fn held(&self) -> bool {
        self.state.held()
    }

    /// A check of [`Lease::held`] that outlives the lease, and does not
    /// keep it: once the lease is dropped, it says false.
    pub fn checker(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move || state.held()
    }

    /// Lets the lease go as a pause past it would (tests).
    #[cfg(test)]
    pub(crate) fn lapse(&self) {
        self.state.lost.store(true, Ordering::Release);
    }

    /// The revision the lease was taken at: a later holder's is larger
    /// (a fencing token).
    pub fn epoch(&self) -> u64 {
        self.taken
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
        if !state.held() {
            return;
        }
        let sent = state.now();
        let revision = state.revision.load(Ordering::Acquire);
        let written = match bucket.update(&key, holder.clone().into(), revision).await {
            Ok(written) => Some(written),
            // Our own last write, whose answer was lost, is still ours.
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                match ours(&bucket, &key, &holder).await {
                    Some(mine) => {
                        state.revision.store(mine, Ordering::Release);
                        next = Duration::ZERO;
                        continue;
                    }
                    None => {
                        tracing::warn!(%error, key, "a lease lapsed and another holds it now");
                        state.lost.store(true, Ordering::Release);
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, key, "a lease could not be renewed yet; trying again");
                None
            }
        };
        match written {
            Some(written) => {
                state.revision.store(written, Ordering::Release);
                state.renewed.store(sent, Ordering::Release);
                next = state.ttl / 3;
            }
            None => next = state.ttl / 12,
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
        if !self.state.held() {
            return;
        }
        self.state.lost.store(true, Ordering::Release);
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
    /// Why the last write failed; none once one succeeds.
    failing: Arc<Mutex<Option<String>>>,
}

impl Heartbeat {
    /// Writes `key` in `bucket` (whose age limit is `ttl`) now, and every
    /// third of `ttl` from now on; a write that fails (the cluster
    /// electing a leader) is tried again sooner.
    pub fn start(handle: &Handle, bucket: &kv::Store, key: &str, ttl: Duration) -> Heartbeat {
        let (store, name) = (bucket.clone(), key.to_owned());
        let failing = Arc::new(Mutex::new(None));
        let failed = failing.clone();
        let beating = handle
            .spawn(async move {
                loop {
                    let (next, failure) = match store.put(&name, ALIVE.into()).await {
                        Ok(_) => (ttl / 3, None),
                        Err(error) => {
                            tracing::warn!(%error, key = name, "a heartbeat could not be written");
                            (ttl / 12, Some(error.to_string()))
                        }
                    };
                    *failed.lock().unwrap_or_else(PoisonError::into_inner) = failure;
                    tokio::time::sleep(next).await;
                }
            })
            .abort_handle();
        Heartbeat {
            key: key.to_owned(),
            bucket: bucket.clone(),
            handle: handle.clone(),
            beating,
            failing,
        }
    }

    /// Why the last heartbeat could not be written, while they fail: NATS
    /// is out of reach, or cannot take writes.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a heartbeat writes; anything else under its key (a purge marker
/// left by one that stopped) is not a live one.
pub const ALIVE: &str = "alive";

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.beating.abort();
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let _ = super::block_on(&self.handle, async move { bucket.purge(&key).await });
    }
}
