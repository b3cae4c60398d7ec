//! Finding workflows: an index of every registered version's summary, kept
//! in memory beside the store and updated with each write through
//! [`super::Catalog`], searched by labels and by words of the description.
//!
//! Pages follow a cursor, the last (workflowId, version) of the page
//! before: a version registered meanwhile neither shifts nor repeats what
//! is paged through.

use super::store::{Lifecycle, Record};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The most results one page holds.
pub const MAX_LIMIT: usize = 500;

/// What a search asks for; every field given must hold.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Words that must all appear in the id, the action type or the
    /// description (any case).
    #[serde(default)]
    pub q: Option<String>,
    /// A severity the workflow is labelled with.
    #[serde(default)]
    pub severity: Option<String>,
    /// An environment it is labelled with.
    #[serde(default)]
    pub environment: Option<String>,
    /// A component it is labelled with.
    #[serde(default)]
    pub component: Option<String>,
    /// Its priority.
    #[serde(default)]
    pub priority: Option<String>,
    /// Its action type.
    #[serde(default)]
    pub action_type: Option<String>,
    /// Its lifecycle; without one, the versions that may run (active and
    /// deprecated).
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    /// Results per page (50 when not given, at most 500).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Where the page starts: the `next` of the page before.
    #[serde(default)]
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    #[schema(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

/// What a search result says of one version.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The workflow.
    pub workflow_id: String,
    /// The version.
    pub version: String,
    /// What it does.
    pub what: String,
    /// When to pick it.
    pub when_to_use: String,
    /// The remediation it performs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    /// Its labels.
    #[schema(value_type = Object)]
    pub labels: plumbline_catalog::workflow::Labels,
    /// Its lifecycle.
    pub lifecycle: Lifecycle,
    /// Its content hash.
    pub content_hash: String,
}

impl Summary {
    /// The summary of `record`.
    pub fn of(record: &Record) -> Summary {
        let w = &record.workflow;
        Summary {
            workflow_id: w.workflow_id.clone(),
            version: w.version.clone(),
            what: w.description.what.clone(),
            when_to_use: w.description.when_to_use.clone(),
            action_type: w.action_type.clone(),
            labels: w.labels.clone(),
            lifecycle: record.lifecycle,
            content_hash: record.content_hash.clone(),
        }
    }

    /// Whether it holds everything `query` asks.
    fn matches(&self, query: &Query, words: &[String], text: &str) -> bool {
        let has = |list: &[String], wanted: &Option<String>| {
            wanted.as_ref().is_none_or(|w| list.iter().any(|l| l == w))
        };
        let lifecycle = match query.lifecycle {
            Some(wanted) => self.lifecycle == wanted,
            None => matches!(self.lifecycle, Lifecycle::Active | Lifecycle::Deprecated),
        };
        lifecycle
            && has(&self.labels.severity, &query.severity)
            && has(&self.labels.environment, &query.environment)
            && has(&self.labels.component, &query.component)
            && query
                .priority
                .as_ref()
                .is_none_or(|p| self.labels.priority.as_ref() == Some(p))
            && query
                .action_type
                .as_ref()
                .is_none_or(|a| self.action_type.as_ref() == Some(a))
            && words.iter().all(|w| text.contains(w.as_str()))
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The results, by workflow id, then version (shared with the index:
    /// a page costs no copy of what it lists).
    #[schema(value_type = Vec<Summary>)]
    pub items: Vec<Arc<Summary>>,
    /// The cursor of the next page; none on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum BadCursor {
    /// Not a cursor at all (not base64url).
    #[error("the cursor `{0}` is not one a page of this catalog gave (it is not base64url)")]
    Malformed(String),
    /// A base64url text no page gave.
    #[error("the cursor `{0}` is not one a page of this catalog gave")]
    Unknown(String),
    /// A page size outside 1 to 500.
    #[error("limit {0} is outside 1 to {MAX_LIMIT}")]
    Limit(usize),
}

/// A version: (workflowId, version).
type Key = (String, String);

/// Every version's summary, with the text words are searched in.
#[derive(Debug, Default)]
pub struct Index {
    /// A version → its summary and its lower-cased text.
    entries: BTreeMap<Key, (Arc<Summary>, String)>,
    /// The repository of an execution image → the versions that run it.
    images: BTreeMap<String, BTreeSet<Key>>,
    /// The versions in drift → the tag that moved away from them: few, so
    /// a registration from a tag finds the drift it ends without reading
    /// every record.
    drifting: BTreeMap<Key, String>,
}

impl Index {
    /// The index of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Index {
        let mut index = Index::default();
        for record in records {
            index.put(record);
        }
        index
    }

    /// Adds or replaces `record`'s entry.
    pub fn put(&mut self, record: &Record) {
        let summary = Summary::of(record);
        let w = &record.workflow;
        let text = [
            w.workflow_id.as_str(),
            w.action_type.as_deref().unwrap_or_default(),
            &w.description.what,
            &w.description.when_to_use,
            &w.description.when_not_to_use,
            &w.description.preconditions,
        ]
        .join("\n")
        .to_lowercase();
        let key = (w.workflow_id.clone(), w.version.clone());
        if let Some(image) = record.execution_image() {
            let repository = plumbline_catalog::executions::repository(image);
            let versions = self.images.entry(repository.to_owned()).or_default();
            versions.insert(key.clone());
        }
        match &record.drift {
            Some(drift) => self.drifting.insert(key.clone(), drift.reference.clone()),
            None => self.drifting.remove(&key),
        };
        self.entries.insert(key, (Arc::new(summary), text));
    }

    /// The versions in drift from the tag `reference`.
    pub fn drifting_from(&self, reference: &str) -> Vec<Key> {
        self.drifting
            .iter()
            .filter(|(_, tag)| *tag == reference)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The versions whose execution image is in `repository`.
    pub fn running(&self, repository: &str) -> Vec<(String, String)> {
        self.images
            .get(repository)
            .map(|versions| versions.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many versions are indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The page of results `query` asks for.
    pub fn search(&self, query: &Query) -> Result<Page, BadCursor> {
        let limit = query.limit.unwrap_or(50);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(BadCursor::Limit(limit));
        }
        let words: Vec<String> = query
            .q
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        // An empty cursor is the first page, as an absent one is.
        let cursor = query.cursor.as_deref().filter(|c| !c.is_empty());
        let after = cursor.map(decode).transpose()?;
        let start = match &after {
            Some(key) => std::ops::Bound::Excluded(key.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let mut found = self
            .entries
            .range((start, std::ops::Bound::Unbounded))
            .filter(|(_, (summary, text))| summary.matches(query, &words, text));
        let items: Vec<Arc<Summary>> = found
            .by_ref()
            .take(limit)
            .map(|(_, (s, _))| s.clone())
            .collect();
        let more = found.next().is_some();
        let next = match items.last() {
            Some(last) if more => Some(encode(&last.workflow_id, &last.version)),
            _ => None,
        };
        Ok(Page { items, next })
    }
}

fn encode(id: &str, version: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{id}\n{version}"))
}

fn decode(cursor: &str) -> Result<(String, String), BadCursor> {
    let shown = || cursor.chars().take(64).collect::<String>();
    let bad = || BadCursor::Unknown(shown());
    let charset = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !cursor.chars().all(charset) {
        return Err(BadCursor::Malformed(shown()));
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (id, version) = text.split_once('\n').ok_or_else(bad)?;
    Ok((id.to_owned(), version.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, version: &str, what: &str, severity: &str) -> Record {
        let text = format!(
            "metadata: {{workflowId: {id}, version: '{version}', description: {{what: '{what}'}}}}\n\
             labels: {{severity: [{severity}]}}\nexecution: {{engine: job}}\n"
        );
        let workflow = plumbline_catalog::read(&text).unwrap();
        Record::new(workflow, "alice", "2026-12-06T00:00:00Z")
    }

    #[test]
    fn words_and_labels_narrow_and_pages_follow_the_cursor() {
        let mut records: Vec<Record> = (0..7)
            .map(|i| {
                let severity = if i % 2 == 0 { "critical" } else { "low" };
                record(&format!("wf-{i}"), "1.0.0", "Restarts a POD", severity)
            })
            .collect();
        records.push(record("scale", "2.0.0", "scales a deployment", "critical"));
        let mut index = Index::of(&records);
        let query = |q: &str, severity: Option<&str>, cursor: Option<String>| Query {
            q: Some(q.into()),
            severity: severity.map(Into::into),
            limit: Some(2),
            cursor,
            ..Query::default()
        };
        let first = index
            .search(&query("restarts pod", Some("critical"), None))
            .unwrap();
        let ids: Vec<&str> = first.items.iter().map(|s| s.workflow_id.as_str()).collect();
        assert_eq!(ids, ["wf-0", "wf-2"]);
        // A version registered between pages shifts nothing.
        index.put(&record("wf-1a", "1.0.0", "restarts a pod", "critical"));
        let second = index
            .search(&query("restarts pod", Some("critical"), first.next))
            .unwrap();
        let ids: Vec<&str> = second
            .items
            .iter()
            .map(|s| s.workflow_id.as_str())
            .collect();
        assert_eq!(ids, ["wf-4", "wf-6"]);
        assert!(second.next.is_none(), "the last page");
        let bad = index.search(&query("x", None, Some("not a cursor".into())));
        assert!(bad.is_err());
    }

    #[test]
    fn versions_that_may_not_run_are_found_only_when_asked_for() {
        let mut disabled = record("wf", "1.0.0", "x", "low");
        disabled.lifecycle = Lifecycle::Disabled;
        let index = Index::of([&disabled]);
        assert!(index.search(&Query::default()).unwrap().items.is_empty());
        let asked = Query {
            lifecycle: Some(Lifecycle::Disabled),
            ..Query::default()
        };
        assert_eq!(index.search(&asked).unwrap().items.len(), 1);
    }
}
