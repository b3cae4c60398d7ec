//! Who made each change: the API server's audit webhook or the admission
//! webhook tells, and the cluster source joins what they tell to the watch
//! events they explain.
//!
//! - [`audit`]: an `audit.k8s.io/v1` EventList read into facts (who made
//!   which persisted change); [`facts`], their store and the join;
//! - [`admission`]: an `admission.k8s.io/v1` AdmissionReview read into a
//!   fact (who is about to make which change); [`admitted`], their store;
//! - [`Attribution`]: both, in the order the design gives them: an audit
//!   fact wins, an admission fact is next, and a change no one explains is
//!   the visible sentinel's.
//!
//! The webhooks are served on the daemon's one HTTP server: the audit one
//! at `/audit-webhook` (and `/audit-webhook/<name>`, the form
//! gitops-reverser's audit kubeconfig uses), the admission one at
//! `/process-validating-webhook`. A body that is not what it should be
//! gets a 400 naming why.

pub mod admission;
pub mod admitted;
pub mod audit;
pub mod facts;
pub mod shared;
#[cfg(test)]
pub(crate) mod testing;

pub use admitted::{Admissions, AdmittedConfig};
pub use facts::{Facts, FactsConfig};

use crate::api::tls::{Peer, certified_only};
use crate::model::Event;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest audit batch taken: the API server's batching webhook sends at
/// most 400 events by default, each with its request and response.
pub const MAX_BATCH_BYTES: usize = 32 << 20;

/// Largest AdmissionReview taken: the API server's own limit on an
/// object is 3 MiB, and a review holds the object and the old one.
pub const MAX_REVIEW_BYTES: usize = 8 << 20;

/// The longest each part of a fact may be: what Kubernetes allows (a name
/// is a DNS subdomain, a namespace a DNS label), and room enough for a
/// user name. Anyone who can reach a webhook can send a fact; one whose
/// parts are longer than any real object's is not kept, or 10,000 facts
/// of megabyte names would hold gigabytes.
pub mod limits {
    /// An object's name, a resource's or a group's: a DNS subdomain.
    pub const NAME: usize = 253;
    /// A namespace: a DNS label.
    pub const NAMESPACE: usize = 63;
    /// A uid or a resourceVersion.
    pub const TOKEN: usize = 128;
    /// A user name (an OIDC subject or email, a service account's).
    pub const USERNAME: usize = 1024;
}

/// Whom a store tells what its webhook records: the other replicas, when
/// they share facts ([`shared`]); no one by default.
pub struct Tell<T: ?Sized>(std::sync::OnceLock<Teller<T>>);

/// What a [`Tell`] calls.
type Teller<T> = Box<dyn Fn(&T) + Send + Sync>;

impl<T: ?Sized> Default for Tell<T> {
    fn default() -> Self {
        Tell(std::sync::OnceLock::new())
    }
}

impl<T: ?Sized> Tell<T> {
    /// Tells `tell` from now on (set once).
    fn set(&self, tell: impl Fn(&T) + Send + Sync + 'static) {
        let _ = self.0.set(Box::new(tell));
    }

    fn tell(&self, what: &T) {
        if let Some(tell) = self.0.get() {
            tell(what);
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Tell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Tell(others)"
        } else {
            "Tell(none)"
        })
    }
}

/// Whether every `(text, limit)` is within its limit.
pub(crate) fn fits(parts: &[(&str, usize)]) -> bool {
    parts.iter().all(|(text, limit)| text.len() <= *limit)
}

/// Which webhook explained a change.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `audit` or `admission`.
    pub source: &'static str,
}

/// What [`Attribution::lookup`] found for a watch event.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The user who made the change.
    By(String),
    /// Nothing yet, and the audit fact may still come: ask again later.
    Wait,
    /// No one says: the change is the sentinel's.
    Unknown,
}

/// Who made each change, from the webhooks configured.
pub struct Attribution {
    audit: Option<Arc<Facts>>,
    admission: Option<Arc<Admissions>>,
    hits: Family<SourceLabel, Counter>,
    misses: Counter,
}

impl Attribution {
    /// Attribution from the audit webhook's facts, the admission
    /// webhook's, or both.
    pub fn new(audit: Option<Arc<Facts>>, admission: Option<Arc<Admissions>>) -> Attribution {
        Attribution {
            audit,
            admission,
            hits: Family::default(),
            misses: Counter::default(),
        }
    }

    /// How long an event waits for its audit fact; zero without the audit
    /// webhook (an admission fact is told before the write persists).
    pub fn grace(&self) -> Duration {
        self.audit
            .as_ref()
            .map_or(Duration::ZERO, |facts| facts.config().grace)
    }

    /// Who made the change `event` reports, which arrived at `arrived`,
    /// asked at `now`. An audit fact wins: while it may still come, the
    /// event waits, even if the admission webhook has spoken.
    pub fn lookup(&self, event: &Event, arrived: Instant, now: Instant) -> Found {
        if let Some(facts) = &self.audit {
            if let Some(user) = facts.lookup(event, arrived) {
                // The admission fact of the same change is spent too.
                if let Some(admissions) = &self.admission {
                    admissions.take(event);
                }
                self.hits
                    .get_or_create(&SourceLabel { source: "audit" })
                    .inc();
                return Found::By(user);
            }
            if now.saturating_duration_since(arrived) < facts.config().grace {
                return Found::Wait;
            }
        }
        if let Some(user) = self.admission.as_ref().and_then(|a| a.take(event)) {
            let label = SourceLabel {
                source: "admission",
            };
            self.hits.get_or_create(&label).inc();
            return Found::By(user);
        }
        self.misses.inc();
        Found::Unknown
    }

    /// Registers `plumbline_attribution_{hits,misses,evictions}_total`.
    pub fn register(&self, registry: &mut Registry) {
        // Every series from the start, at 0: an alert on one finds it.
        for (source, on) in [
            ("audit", &self.audit.is_some()),
            ("admission", &self.admission.is_some()),
        ] {
            if *on {
                let _ = self.hits.get_or_create(&SourceLabel { source });
            }
        }
        let attribution = registry.sub_registry_with_prefix("attribution");
        attribution.register(
            "hits",
            "Watch events whose author a webhook named, by webhook",
            self.hits.clone(),
        );
        attribution.register(
            "misses",
            "Watch events no webhook explained (authored by the sentinel)",
            self.misses.clone(),
        );
        if let Some(admissions) = &self.admission {
            attribution.register(
                "evictions",
                "Admission facts dropped unused (older than the TTL, or beyond the capacity)",
                admissions.evictions().clone(),
            );
        }
    }
}

/// The webhooks' routes: the audit one recording into `audit` (with
/// `true`, only from clients whose certificate the server's client CA
/// signed), the admission one into `admission` (with `true`, likewise),
/// each only if given.
pub fn routes(
    audit: Option<(Arc<Facts>, bool)>,
    admission: Option<(Arc<Admissions>, bool)>,
) -> Router {
    let mut router = Router::new();
    if let Some((facts, certified)) = audit {
        router = router.merge(
            Router::new()
                .route("/audit-webhook", post(audit_webhook))
                .route("/audit-webhook/{cluster}", post(audit_webhook))
                .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
                .with_state(AuditState { facts, certified }),
        );
    }
    if let Some((admissions, certified)) = admission {
        let certified_only = axum::middleware::from_fn_with_state(certified, certified_only);
        router = router.merge(
            Router::new()
                .route(
                    "/process-validating-webhook",
                    post(admission_webhook).layer(certified_only),
                )
                .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
                .with_state(admissions),
        );
    }
    router
}

#[derive(Clone)]
struct AuditState {
    facts: Arc<Facts>,
    /// Only clients with a certificate the client CA signed.
    certified: bool,
}

async fn audit_webhook(
    State(AuditState { facts, certified }): State<AuditState>,
    peer: Option<Extension<Peer>>,
    body: Bytes,
) -> (StatusCode, String) {
    if certified && !peer.is_some_and(|Extension(p)| p.client_certified) {
        refused(
            "an audit webhook body",
            &"no client certificate",
            facts.refused(),
        );
        return (
            StatusCode::UNAUTHORIZED,
            "the audit webhook takes requests with a client certificate the configured CA signed\n"
                .into(),
        );
    }
    // A batch can be tens of MiB: read off the runtime's threads, which
    // serve the probes.
    let read = tokio::task::spawn_blocking(move || audit::facts(&body)).await;
    let Ok(read) = read else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the batch failed\n".into(),
        );
    };
    match read {
        Ok(found) => {
            facts.record(found);
            (StatusCode::OK, "{}".into())
        }
        Err(error) => {
            refused("an audit webhook body", &error, facts.refused());
            (StatusCode::BAD_REQUEST, format!("{error}\n"))
        }
    }
}

async fn admission_webhook(State(admissions): State<Arc<Admissions>>, body: Bytes) -> Response {
    // A review can be megabytes of JSON: read off the runtime's threads,
    // which serve the probes. The API server waits for the answer before
    // it persists: the fact is recorded before the answer goes, so the
    // watch event finds it.
    let read = tokio::task::spawn_blocking(move || admission::review(&body)).await;
    let Ok(read) = read else {
        let failed = "reading the review failed\n";
        return (StatusCode::INTERNAL_SERVER_ERROR, failed).into_response();
    };
    match read {
        Ok((answer, fact)) => {
            if let Some(fact) = fact {
                admissions.record(fact);
            }
            let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
            (json, answer.to_string()).into_response()
        }
        Err(error) => {
            refused("an AdmissionReview", &error, admissions.refused());
            (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
        }
    }
}

/// Says a refused body at the 1st, 2nd, 4th, 8th… refusal: anyone who can
/// reach the port must not be able to flood the log.
fn refused(what: &str, error: &dyn std::fmt::Display, count: u64) {
    if count.is_power_of_two() {
        tracing::warn!(%error, refused = count, "{what} was refused");
    }
}

#[cfg(test)]
mod tests {
    use super::admission::{Admitted, AdmittedKey, fingerprint};
    use super::audit::{Fact, Subject};
    use super::testing::config_map;
    use super::*;
    use crate::model::Operation;
    use serde_json::json;

    fn object() -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "shop"}, "data": {"k": "1"}})
    }

    fn event() -> Event {
        let target = config_map("a");
        Event {
            uid: Some("u1".into()),
            resource_version: Some("7".into()),
            ..Event::new(Operation::Update, target, object().to_string())
        }
    }

    fn admitted(user: &str) -> Admitted {
        Admitted {
            username: user.into(),
            key: AdmittedKey {
                group: String::new(),
                resource: "configmaps".into(),
                namespace: Some("shop".into()),
                name: "a".into(),
                operation: Operation::Update,
                fingerprint: Some(fingerprint(&object())),
            },
        }
    }

    fn audited(user: &str) -> Fact {
        Fact {
            username: user.into(),
            deletion: false,
            subject: Subject {
                group: String::new(),
                resource: "configmaps".into(),
                namespace: Some("shop".into()),
                name: Some("a".into()),
                uid: Some("u1".into()),
                resource_version: Some("7".into()),
            },
        }
    }

    fn counted(attribution: &Attribution) -> String {
        let mut registry = Registry::default();
        attribution.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn with_the_admission_webhook_alone_nothing_waits() {
        let admissions = Arc::new(Admissions::new(AdmittedConfig::default()));
        let attribution = Attribution::new(None, Some(admissions.clone()));
        assert_eq!(attribution.grace(), Duration::ZERO);
        let text = counted(&attribution);
        assert!(
            text.contains("attribution_hits_total{source=\"admission\"} 0"),
            "{text}"
        );
        admissions.record(admitted("alice"));
        let now = Instant::now();
        assert_eq!(
            attribution.lookup(&event(), now, now),
            Found::By("alice".into())
        );
        assert_eq!(attribution.lookup(&event(), now, now), Found::Unknown);
        let text = counted(&attribution);
        assert!(
            text.contains("attribution_hits_total{source=\"admission\"} 1"),
            "{text}"
        );
        assert!(text.contains("attribution_misses_total 1"), "{text}");
        assert!(text.contains("attribution_evictions_total 0"), "{text}");
    }

    #[test]
    fn the_audit_fact_wins_and_is_waited_for_within_the_grace_window() {
        let facts = Arc::new(Facts::new(FactsConfig::default()));
        let admissions = Arc::new(Admissions::new(AdmittedConfig::default()));
        let attribution = Attribution::new(Some(facts.clone()), Some(admissions.clone()));
        admissions.record(admitted("impersonator"));
        let arrived = Instant::now();
        // The admission fact is there, but the audit one may still come.
        assert_eq!(attribution.lookup(&event(), arrived, arrived), Found::Wait);
        facts.record(vec![audited("alice")]);
        assert_eq!(
            attribution.lookup(&event(), arrived, arrived),
            Found::By("alice".into())
        );
        // The admission fact of that change was spent with it.
        assert_eq!(admissions.take(&event()), None);
        // Without an audit fact, after the grace window, the admission
        // fact stands in.
        admissions.record(admitted("bob"));
        let mut other = event();
        other.resource_version = Some("8".into());
        let late = arrived + Duration::from_secs(4);
        assert_eq!(
            attribution.lookup(&other, arrived, late),
            Found::By("bob".into())
        );
        let text = counted(&attribution);
        assert!(
            text.contains("attribution_hits_total{source=\"audit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("attribution_hits_total{source=\"admission\"} 1"),
            "{text}"
        );
        assert!(text.contains("attribution_misses_total 0"), "{text}");
    }
}
