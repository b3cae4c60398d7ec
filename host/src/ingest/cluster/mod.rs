//! The cluster as a source: discovery finds the resources the watch rules
//! select; a seed lists each of them, a page at a time; following, each
//! is watched from its listing's resourceVersion, and listed again (a seed
//! scoped to it alone) when that version is gone.
//!
//! The client and the watches run on the daemon's tokio runtime; listing
//! and routing (Wasm) run on the source's own thread, which blocks on the
//! runtime for each page and each batch of watch events, so a probe is
//! never delayed by a policy. Each resource's version is saved with the
//! queue ([`cursors`]): a restart resumes each watch where it was.
//!
//! A listing that fails (a resource the daemon may not list, a server
//! that went away) makes the seed incomplete: nothing is pruned on its
//! account.
//!
//! Discovery runs again every [`ClusterOptions::rediscover`]: a resource
//! found since (a CRD installed) is listed, as a seed of its own, and
//! watched; one gone (a CRD removed) stops being watched, and its files
//! stay.

mod convert;
pub mod cursors;
mod discover;
mod reports;
pub mod rules;
mod select;
mod waiting;
mod watch;

pub use convert::event_of;
pub use select::Selector;

use crate::ingest::attribution::Attribution;
use crate::ingest::source::{Context, SeedReport, Source, SourceError};
use crate::mirror::{Listing, SeedScope};
use crate::model::{Event, GroupResource};
use cursors::SavedVersions;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::discovery::verbs;
pub use reports::Unreadable;
use reports::{Reports, Unread, display};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use waiting::{Batch, Released, Waiting};
use watch::{Watch, Watched};

/// Objects asked for per page of a listing.
const PAGE: u32 = 500;

/// Watch events routed at once, at most.
const BATCH: usize = 256;

/// How often a resource whose listing failed is listed again.
const RELIST_FAILED: Duration = Duration::from_secs(10);

/// Why the cluster cannot be reached at all.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig could not be read or used.
    #[error("reading the kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The pod's own configuration (its service account) could not be read.
    #[error("reading the in-cluster configuration (is this a pod with a service account?)")]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be made from it.
    #[error("making a client for {server}")]
    Client {
        /// The API server.
        server: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// How the cluster is reached.
#[derive(Debug, Clone, Copy)]
pub enum Reach<'a> {
    /// As the kubeconfig at this path says (its current context).
    Kubeconfig(&'a Path),
    /// As a pod reaches its own cluster: its service account's token and
    /// the `KUBERNETES_SERVICE_*` environment.
    InCluster,
}

/// A client of the cluster `reach` names, with the API server's URL. Must
/// be called on the runtime the client will run on.
pub async fn connect(reach: Reach<'_>) -> Result<(kube::Client, String), ClusterError> {
    let config = match reach {
        Reach::Kubeconfig(path) => {
            let kubeconfig_error = |source| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            let options = kube::config::KubeConfigOptions::default();
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(kubeconfig_error)?
        }
        Reach::InCluster => kube::Config::incluster().map_err(ClusterError::InCluster)?,
    };
    // Its name goes into messages and commit trailers: no credentials.
    let server = crate::model::url::redact(&config.cluster_url.to_string());
    let client = kube::Client::try_from(config).map_err(|source| ClusterError::Client {
        server: server.clone(),
        source,
    })?;
    Ok((client, server))
}

/// One resource followed.
struct Followed {
    resource: ApiResource,
    /// Where its watch starts or resumes: after the last event handed on.
    version: Option<String>,
    /// Bumped by each listing: older watches' messages are dropped.
    generation: u64,
    /// Its running watch.
    watch: Option<AbortHandle>,
}

/// How the cluster is followed.
pub struct ClusterOptions {
    /// What messages and commit trailers call it (`cluster https://…`).
    pub name: String,
    /// The watch rules now (in the `rule-match` plugin's format), asked at
    /// each discovery: the rules change while the daemon runs.
    pub rules: Box<dyn Fn() -> Vec<Value> + Send>,
    /// What `*` leaves out now: the match chain's `rule-match` settings,
    /// asked at each discovery (the policies change while the daemon
    /// runs).
    pub skip: Box<dyn Fn() -> plumbline_kinds::scope::Skip + Send>,
    /// A text that changes whenever the mirror's configuration does
    /// (destinations and rules): versions saved under another are not
    /// resumed from.
    pub config: Box<dyn Fn() -> String + Send>,
    /// Whether the first seed may resume watches from the versions saved
    /// before a restart instead of listing: only when following (a run
    /// that lists once and stops must list).
    pub resume: bool,
    /// How often discovery runs again.
    pub rediscover: Duration,
    /// Who made which change, as the webhooks say; none when no one
    /// says (changes are then the visible sentinel's).
    pub attribution: Option<Arc<Attribution>>,
    /// Where failing parts stand until they work (`/readyz`).
    pub health: Option<Arc<crate::telemetry::health::Health>>,
    /// Where the resources that cannot be read stand until they can (the
    /// statuses of the rules that select them).
    pub unreadable: Unreadable,
}

/// The cluster, followed through List and Watch.
pub struct ClusterSource {
    client: kube::Client,
    runtime: Handle,
    options: ClusterOptions,
    followed: BTreeMap<GroupResource, Followed>,
    /// When discovery last ran.
    discovered: Instant,
    /// When resources whose listing failed were last listed again.
    relisted: Instant,
    /// What fails now.
    reports: Reports,
    /// The last generation given to a listing.
    generations: u64,
    /// Watch events not routed yet.
    waiting: Waiting,
    /// The versions saved with the queue; read at the first seed.
    saved: Option<SavedVersions>,
}

impl ClusterSource {
    /// Follows the cluster `client` reaches, on `runtime`, as `options`
    /// say.
    pub fn new(client: kube::Client, runtime: Handle, options: ClusterOptions) -> ClusterSource {
        let waiting = Waiting::new(options.attribution.clone(), BATCH);
        ClusterSource {
            waiting,
            saved: None,
            reports: Reports::new(options.health.clone(), options.unreadable.clone()),
            generations: 0,
            relisted: Instant::now(),
            client,
            runtime,
            options,
            followed: BTreeMap::new(),
            discovered: Instant::now(),
        }
    }

    /// The resources the rules select now, as discovery finds them; those
    /// followed before and selected no more stop being watched, except
    /// those of a group that did not answer, which stay as they were.
    /// Returns those not followed before; a group that did not answer is
    /// said, and counted.
    fn discover(&mut self, context: &Context) -> Result<Discovered, kube::Error> {
        self.discovered = Instant::now();
        let selector = Selector::of(&(self.options.rules)(), (self.options.skip)());
        let found = self
            .runtime
            .block_on(discover::groups(&self.client, &selector))?;
        let mut now = BTreeMap::new();
        let mut new = Vec::new();
        for group in &found.groups {
            self.reports.working(&group_part(group.name()));
            for (resource, capabilities) in group.recommended_resources() {
                let listable = capabilities.supports_operation(verbs::LIST)
                    && capabilities.supports_operation(verbs::WATCH);
                if listable && selector.selects(&resource.group, &resource.plural) {
                    let id = GroupResource::new(&resource.group, &resource.plural);
                    let followed = self.followed.remove(&id).unwrap_or_else(|| {
                        new.push(id.clone());
                        Followed {
                            resource: resource.clone(),
                            version: None,
                            generation: 0,
                            watch: None,
                        }
                    });
                    now.insert(
                        id,
                        Followed {
                            resource,
                            ..followed
                        },
                    );
                }
            }
        }
        let unanswered: Vec<&str> = found.failed.iter().map(|(g, _)| g.as_str()).collect();
        let kept: Vec<GroupResource> = self
            .followed
            .keys()
            .filter(|id| unanswered.contains(&id.group.as_str()))
            .cloned()
            .collect();
        for id in kept {
            let followed = self.followed.remove(&id).expect("listed above");
            now.insert(id, followed);
        }
        for (group, error) in &found.failed {
            let message = format!(
                "discovering the API group {}: {error}; its resources are not listed anew, and nothing is pruned on their account",
                if group.is_empty() { "core" } else { group }
            );
            self.reports
                .failing(&group_part(group), message, true, context.notices);
        }
        for (id, gone) in std::mem::replace(&mut self.followed, now) {
            tracing::info!("{} is not followed any more", display(&id));
            self.reports.readable(&id);
            if let Some(watch) = gone.watch {
                watch.abort();
            }
        }
        Ok(Discovered {
            new,
            unanswered: found.failed.len(),
        })
    }

    /// Runs discovery again if it is time: resources found since are
    /// listed (a seed of their own) and then watched.
    fn rediscover(&mut self, context: &Context) {
        if self.discovered.elapsed() < self.options.rediscover {
            return;
        }
        match self.discover(context) {
            Ok(Discovered { new, .. }) => {
                self.reports.working(DISCOVERY);
                if !new.is_empty() {
                    tracing::info!("{} resource(s) found since the last discovery", new.len());
                    context.control.relist(SeedScope::resources(new));
                }
            }
            Err(error) => self.discovery_failed(&error, context),
        }
    }

    fn discovery_failed(&mut self, error: &kube::Error, context: &Context) {
        let message = format!("discovering the cluster's resources: {error}");
        self.reports.failing(
            DISCOVERY,
            message,
            !self.followed.is_empty(),
            context.notices,
        );
    }

    /// Lists again, every [`RELIST_FAILED`], the resources whose listing
    /// failed: they are watched once it works.
    fn relist_failed(&mut self, context: &Context) {
        if self.relisted.elapsed() < RELIST_FAILED {
            return;
        }
        self.relisted = Instant::now();
        let failed: Vec<GroupResource> = self
            .followed
            .iter()
            .filter(|(_, f)| f.version.is_none() && f.watch.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if !failed.is_empty() {
            context.control.relist(SeedScope::resources(failed));
        }
    }

    /// Lists `id` into the mirror, a page at a time: how many objects, or
    /// why it could not.
    fn list(&mut self, id: &GroupResource, context: &Context) -> Result<usize, ListFailure> {
        let followed = self
            .followed
            .get_mut(id)
            .expect("listing a followed resource");
        if let Some(watch) = followed.watch.take() {
            watch.abort();
        }
        // One counter for the whole source: a resource dropped and followed
        // again must not reuse a generation its old watch still sends.
        self.generations += 1;
        followed.generation = self.generations;
        followed.version = None;
        self.waiting.forget(id);
        let resource = followed.resource.clone();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let mut params = ListParams::default().limit(PAGE);
        let mut count = 0;
        loop {
            let page = self
                .runtime
                .block_on(api.list(&params))
                .map_err(ListFailure::Api)?;
            let events: Vec<Event> = page
                .items
                .iter()
                .filter_map(|object| event_of(&resource, object, crate::model::Operation::Create))
                .collect();
            count += events.len();
            let routing = context
                .intake
                .submit(&events)
                .map_err(ListFailure::Intake)?;
            for error in &routing.errors {
                context.notices.error(error);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => {
                    let version = page.metadata.resource_version.unwrap_or_default();
                    self.followed.get_mut(id).expect("still followed").version = Some(version);
                    return Ok(count);
                }
            }
        }
    }

    /// Starts a watch of every followed resource that has a version to
    /// start from and no watch yet.
    fn watch(&mut self, out: &tokio::sync::mpsc::Sender<Watched>) {
        for followed in self.followed.values_mut() {
            let (None, Some(version)) = (&followed.watch, &followed.version) else {
                continue;
            };
            let watch = Watch {
                api: Api::all_with(self.client.clone(), &followed.resource),
                resource: followed.resource.clone(),
                generation: followed.generation,
                version: version.clone(),
            };
            let task = self.runtime.spawn(watch.run(out.clone()));
            followed.watch = Some(task.abort_handle());
        }
    }

    /// Routes a batch of watch events, then advances each resource's
    /// version past them.
    fn route(&mut self, batch: &mut Batch, context: &Context) -> Result<(), SourceError> {
        if !batch.events.is_empty() {
            let routing = context.intake.submit(&batch.events)?;
            for error in &routing.errors {
                context.notices.error(error);
            }
            context.intake.end_pass();
        }
        // The events before these versions are in the queue now.
        if let Some(saved) = &mut self.saved {
            let now = batch.versions.iter().map(|(id, v)| (id, Some(v.as_str())));
            saved.save(context.intake, now, None)?;
        }
        for (id, version) in batch.versions.drain() {
            if let Some(followed) = self.followed.get_mut(&id) {
                followed.version = Some(version);
            }
        }
        batch.clear();
        Ok(())
    }

    /// The digest of the configuration and the resources followed now.
    fn scope_digest(&self) -> String {
        cursors::scope_digest(&(self.options.config)(), self.followed.keys())
    }

    /// At the first seed of everything: the resources whose watch resumes
    /// from the version saved before a restart, each set to resume.
    fn resume(&mut self, context: &Context) -> Result<Vec<GroupResource>, SourceError> {
        let saved = SavedVersions::load(context.intake)?;
        let resumable = saved.resumable(&self.scope_digest(), self.followed.keys());
        self.saved = Some(saved);
        for (id, version) in &resumable {
            self.generations += 1;
            let followed = self.followed.get_mut(id).expect("followed");
            followed.generation = self.generations;
            followed.version = Some(version.clone());
        }
        if !resumable.is_empty() {
            tracing::info!(
                resources = resumable.len(),
                "resuming watches from the versions saved before the restart"
            );
        }
        Ok(resumable.into_keys().collect())
    }

    /// After a seed: the versions its listings reached, and, after one of
    /// everything, the scope they hold for; resources not followed any
    /// more are forgotten.
    fn save_seed(
        &mut self,
        listed: &[GroupResource],
        everything: bool,
        context: &Context,
    ) -> Result<(), SourceError> {
        let digest = everything.then(|| self.scope_digest());
        let followed: Vec<GroupResource> = self.followed.keys().cloned().collect();
        let Some(saved) = &mut self.saved else {
            return Ok(());
        };
        let now = listed.iter().filter_map(|id| {
            let version = self.followed.get(id)?.version.as_deref()?;
            Some((id, Some(version)))
        });
        saved.save(context.intake, now, digest.as_deref())?;
        saved.keep_only(context.intake, &followed)?;
        Ok(())
    }

    /// Takes one message of a watch; a resource whose version is gone is
    /// returned, to be listed again.
    fn take(&mut self, message: Watched, context: &Context) -> Option<GroupResource> {
        let current = |source: &Self, id: &GroupResource, generation: u64| {
            source
                .followed
                .get(id)
                .is_some_and(|f| f.generation == generation)
        };
        match message {
            Watched::Event {
                resource,
                generation,
                event,
                version,
            } if current(self, &resource, generation) => {
                self.reports.readable(&resource);
                self.waiting.push(resource, version, Some(event));
            }
            Watched::Cursor {
                resource,
                generation,
                version,
            } if current(self, &resource, generation) => {
                self.reports.readable(&resource);
                self.waiting.push(resource, version, None);
            }
            Watched::Gone {
                resource,
                generation,
            } if current(self, &resource, generation) => return Some(resource),
            Watched::Failed {
                resource,
                generation,
                error,
                forbidden,
            } if current(self, &resource, generation) => {
                let message = format!("watching {}: {error}; trying again", display(&resource));
                let unread = Unread { forbidden, message };
                self.reports
                    .unreadable(&resource, unread, true, context.notices);
            }
            // A message of a watch that a listing replaced.
            _ => {}
        }
        None
    }

    /// Routes what may go now: events whose author is known, or that
    /// waited long enough.
    fn release(&mut self, batch: &mut Batch, context: &Context) -> Result<(), SourceError> {
        loop {
            let released = self.waiting.release(batch, Instant::now());
            self.route(batch, context)?;
            if released == Released::AllThatMay {
                return Ok(());
            }
        }
    }
}

/// Why a resource could not be listed.
enum ListFailure {
    /// The API server refused or failed.
    Api(kube::Error),
    /// The mirror could not take what was listed.
    Intake(crate::queue::QueueError),
}

/// The readiness part of the discovery.
const DISCOVERY: &str = "source discovery";

/// What a discovery found beyond the resources it follows.
#[derive(Default)]
struct Discovered {
    /// Resources not followed before.
    new: Vec<GroupResource>,
    /// API groups that did not answer.
    unanswered: usize,
}

/// The readiness part of an API group's discovery.
fn group_part(group: &str) -> String {
    format!(
        "source API group {}",
        if group.is_empty() { "core" } else { group }
    )
}

impl Source for ClusterSource {
    fn name(&self) -> String {
        self.options.name.clone()
    }

    fn seed(&mut self, scope: &SeedScope, context: &Context) -> Result<SeedReport, SourceError> {
        // A listing of a few resources (a watch that expired, a listing
        // that failed) needs no discovery: the periodic one finds what
        // is new.
        let discovery = match scope.resources {
            None => self.discover(context),
            Some(_) => Ok(Discovered::default()),
        };
        let mut unanswered = 0;
        let discovered = match discovery {
            Ok(Discovered {
                new,
                unanswered: groups,
            }) => {
                unanswered = groups;
                self.reports.working(DISCOVERY);
                // Found now but outside this listing's scope: a listing of
                // their own, since this one may prune only what it lists.
                let outside: Vec<GroupResource> = new
                    .into_iter()
                    .filter(|id| scope.resources.as_ref().is_some_and(|r| !r.contains(id)))
                    .collect();
                if !outside.is_empty() {
                    context.control.relist(SeedScope::resources(outside));
                }
                true
            }
            Err(error) => {
                self.discovery_failed(&error, context);
                false
            }
        };
        let everything = scope.resources.is_none() && scope.destinations.is_none();
        // Versions saved before a restart are trusted only at the first
        // seed, of everything, with every group answering.
        let first = self.saved.is_none();
        let resumable = self.options.resume && everything && discovered && unanswered == 0;
        let resumed = match (first, resumable) {
            (true, true) => self.resume(context)?,
            (true, false) => {
                self.saved = Some(SavedVersions::load(context.intake)?);
                Vec::new()
            }
            (false, _) => Vec::new(),
        };
        let wanted: Vec<GroupResource> = self
            .followed
            .keys()
            .filter(|id| scope.resources.as_ref().is_none_or(|r| r.contains(*id)))
            .filter(|id| !resumed.contains(id))
            .cloned()
            .collect();
        // What resumes is not listed, and none of its files may be pruned.
        let listed = if resumed.is_empty() {
            scope.clone()
        } else {
            SeedScope::resources(wanted.iter().cloned())
        };
        let seed = context.intake.begin_seed(&listed)?;
        let mut report = SeedReport {
            from: match resumed.len() {
                0 => format!("{} resource(s)", wanted.len()),
                n => format!("{} resource(s) listed, {n} resumed", wanted.len()),
            },
            unread: usize::from(!discovered) + unanswered,
            complete: discovered && unanswered == 0,
            routed: true,
            ..SeedReport::default()
        };
        for id in &wanted {
            match self.list(id, context) {
                Ok(count) => {
                    self.reports.readable(id);
                    report.objects += count;
                }
                Err(ListFailure::Intake(error)) => return Err(error.into()),
                Err(ListFailure::Api(error)) => {
                    let message = format!(
                        "listing {}: {error}; nothing is pruned on its account, and it is listed again every {} s",
                        display(id),
                        RELIST_FAILED.as_secs()
                    );
                    let forbidden = matches!(&error, kube::Error::Api(s) if s.code == 403);
                    let unread = Unread { forbidden, message };
                    self.reports.unreadable(id, unread, false, context.notices);
                    report.unread += 1;
                    report.complete = false;
                }
            }
        }
        let listing = Listing {
            complete: report.complete,
            held_back: Vec::new(),
            deleted_by: None,
        };
        context.intake.end_seed(seed, &listing)?;
        context.intake.end_pass();
        self.save_seed(&wanted, everything && discovered, context)?;
        Ok(report)
    }

    fn follow(&mut self, context: &Context) -> Result<(), SourceError> {
        tracing::info!("following {}", self.options.name);
        let (out, mut messages) = tokio::sync::mpsc::channel(BATCH * 4);
        let mut batch = Batch::default();
        let result = loop {
            if context.control.stopped() {
                break Ok(());
            }
            if let Some(scope) = context.control.take_relist()
                && let Err(error) = self.seed(&scope, context)
            {
                break Err(error);
            }
            self.rediscover(context);
            self.relist_failed(context);
            self.watch(&out);
            // The timer is made on the runtime: this thread is not one of its.
            let wait =
                async { tokio::time::timeout(Duration::from_millis(250), messages.recv()).await };
            let mut next = self.runtime.block_on(wait).ok().flatten();
            let mut gone = Vec::new();
            let mut taken = 0;
            while let Some(message) = next.take() {
                gone.extend(self.take(message, context));
                taken += 1;
                if taken < BATCH {
                    next = messages.try_recv().ok();
                }
            }
            if let Err(error) = self.release(&mut batch, context) {
                break Err(error);
            }
            if !gone.is_empty() {
                tracing::info!("watches expired; listing {} resource(s) again", gone.len());
                context.control.relist(SeedScope::resources(gone));
            }
        };
        for followed in self.followed.values_mut() {
            if let Some(watch) = followed.watch.take() {
                watch.abort();
            }
        }
        result
    }
}
