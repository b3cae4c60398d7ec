//! The test API server's storage: objects by (group, resource, namespace,
//! name), one resourceVersion counter for all of them (as etcd's revision),
//! a bounded history of changes that watches resume from (older positions
//! get 410 Gone, as after a compaction), and the semantics a client relies
//! on: optimistic concurrency (409 on a stale resourceVersion), no-op
//! writes that change nothing (no new resourceVersion, no watch event),
//! `generateName`, finalizers, owner-reference cascades, the status
//! subresource, CRDs that add resources.

use super::admission::{Admission, Review};
use super::resources::{Resource, builtins};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// (group, plural, namespace or `""`, name).
pub type Key = (String, String, String, String);

/// Changes kept for watches to resume from.
const HISTORY: usize = 10_000;

/// One persisted change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the change made.
    pub rv: u64,
    /// Its object's key.
    pub key: Key,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object after the change (before it, for a delete).
    pub object: Value,
    /// Who made it.
    pub user: String,
}

/// A request refused, as a `Status` says it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub code: u16,
    /// The machine-readable reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// What a person reads.
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    fn not_found(resource: &Resource, name: &str) -> ApiError {
        let what = qualified(resource);
        ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }

    /// The `Status` object of the answer.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// `configmaps` or `deployments.apps`, as the real server names a resource.
fn qualified(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct Write {
    /// Who writes.
    pub user: String,
    /// `?dryRun=All`: answer as if written, persist nothing.
    pub dry_run: bool,
    /// `?fieldManager=`, else the client's name.
    pub manager: String,
    /// The request's path names the object (not a create with
    /// generateName, not an item of a deletecollection): its admission
    /// review says the name.
    pub named: bool,
}

struct Inner {
    rv: u64,
    serial: u64,
    resources: Vec<Resource>,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// Positions at or before this one can no longer be watched from.
    compacted: u64,
}

/// Every object of the server.
pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
    /// Where writes are reviewed before they persist.
    pub admission: Admission,
}

impl Store {
    /// The built-in resources and the namespaces every cluster has.
    pub fn new() -> Store {
        let store = Store {
            inner: Mutex::new(Inner {
                rv: 100,
                serial: 0,
                resources: builtins(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 0,
            }),
            changes: broadcast::channel(100_000).0,
            admission: Admission::default(),
        };
        let namespaces = store.resource("", "v1", "namespaces").unwrap();
        for name in ["default", "kube-system", "kube-public"] {
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            store
                .create(&namespaces, None, object, &Write::default())
                .unwrap();
        }
        store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every resource served now.
    pub fn resources(&self) -> Vec<Resource> {
        self.lock().resources.clone()
    }

    /// The resource `plural` of `group/version`, if served.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.lock()
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The current resourceVersion.
    pub fn revision(&self) -> u64 {
        self.lock().rv
    }

    /// The changes after `rv` still in the history, oldest first.
    pub fn changes_since(&self, rv: u64) -> Vec<Change> {
        let inner = self.lock();
        inner
            .history
            .iter()
            .filter(|c| c.rv > rv)
            .cloned()
            .collect()
    }

    /// Deletes an object no watch hears of, and forgets every change so
    /// far, as when watches were down across an etcd compaction: only a
    /// new listing can tell that the object went.
    pub fn delete_unheard(&self, resource: &Resource, namespace: Option<&str>, name: &str) {
        let mut inner = self.lock();
        inner.objects.remove(&key(resource, namespace, name));
        inner.rv += 1;
        inner.compacted = inner.rv;
        inner.history.clear();
    }

    /// Forgets every change so far: a watch from an earlier position gets
    /// 410 Gone, as after etcd compacts.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.compacted = inner.rv;
        inner.history.clear();
    }

    /// One object.
    pub fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = key(resource, namespace, name);
        self.lock()
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// The objects of `resource` (in `namespace`, or all) that `keep`
    /// picks, in key order from after `after`, at most `limit`; with the
    /// resourceVersion of the listing.
    pub fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        after: Option<&Key>,
        limit: Option<usize>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> (Vec<Value>, u64, Option<Key>) {
        let inner = self.lock();
        let mut items = Vec::new();
        let mut next = None;
        for (key, object) in inner.objects.iter() {
            if key.0 != resource.group
                || key.1 != resource.plural
                || namespace.is_some_and(|ns| ns != key.2)
                || after.is_some_and(|a| key <= a)
                || !keep(object)
            {
                continue;
            }
            if limit.is_some_and(|l| items.len() == l) {
                next = Some(key.clone());
                break;
            }
            items.push(object.clone());
        }
        // The continue token resumes after the last item returned.
        let next = next.map(|_| {
            let last = items.last().unwrap();
            key(
                resource,
                last["metadata"]["namespace"].as_str(),
                last["metadata"]["name"].as_str().unwrap(),
            )
        });
        (items, inner.rv, next)
    }

    /// What a watch from `from` (none: the current objects, as `ADDED`)
    /// reports before the changes still to come, and where those come.
    pub fn watch(
        &self,
        resource: &Resource,
        from: Option<u64>,
    ) -> Result<(Vec<Change>, broadcast::Receiver<Change>, u64), ApiError> {
        let inner = self.lock();
        let receiver = self.changes.subscribe();
        let mine = |key: &Key| key.0 == resource.group && key.1 == resource.plural;
        let initial = match from {
            None | Some(0) => inner
                .objects
                .iter()
                .filter(|(key, _)| mine(key))
                .map(|(key, object)| Change {
                    rv: rv_of(object),
                    key: key.clone(),
                    kind: "ADDED",
                    object: object.clone(),
                    user: String::new(),
                })
                .collect(),
            Some(from) if from < inner.compacted => {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {from} ({})", inner.compacted + 1),
                ));
            }
            Some(from) => inner
                .history
                .iter()
                .filter(|c| c.rv > from && mine(&c.key))
                .cloned()
                .collect(),
        };
        Ok((initial, receiver, inner.rv))
    }

    /// Creates an object.
    pub fn create(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        mut object: Value,
        write: &Write,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        check_kind(resource, &mut object)?;
        string_data(&mut object);
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata is required"))?;
        inner.serial += 1;
        let serial = inner.serial;
        let generated = meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        resource.kind
                    ),
                ));
            };
            let name = format!("{prefix}{}", suffix(serial));
            meta.insert("name".into(), json!(name));
        }
        let name = meta["name"].as_str().unwrap().to_owned();
        if resource.namespaced {
            let ns = namespace
                .map(str::to_owned)
                .or_else(|| {
                    meta.get("namespace")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "default".to_owned());
            if meta
                .get("namespace")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty() && n != ns)
            {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let namespace_key = (
                "".to_owned(),
                "namespaces".to_owned(),
                String::new(),
                ns.clone(),
            );
            if !inner.objects.contains_key(&namespace_key) {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                ));
            }
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        let key = key(
            resource,
            meta.get("namespace").and_then(Value::as_str),
            &name,
        );
        if inner.objects.contains_key(&key) {
            let what = qualified(resource);
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{what} \"{name}\" already exists"),
            ));
        }
        meta.insert(
            "uid".into(),
            json!(format!("00000000-0000-4000-8000-{serial:012x}")),
        );
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        if resource.has_status() {
            meta.insert("generation".into(), json!(1));
        }
        managed(meta, &write.manager, "Update", &resource.api_version());
        let named = if generated { "" } else { name.as_str() };
        self.admission
            .review(Review {
                operation: "CREATE",
                resource,
                subresource: "",
                namespace: object["metadata"]["namespace"].as_str(),
                name: named,
                object: Some(&object),
                old_object: None,
                user: &write.user,
                dry_run: write.dry_run,
            })
            .map_err(|refusal| ApiError::new(403, "Forbidden", refusal))?;
        denied(&object)?;
        if write.dry_run {
            return Ok(object);
        }
        if resource.kind == "CustomResourceDefinition" {
            establish(&mut inner, &mut object);
        }
        Ok(self.commit(&mut inner, key, "ADDED", object, &write.user))
    }

    /// Replaces an object (or only its status, with `status`), refusing a
    /// stale `metadata.resourceVersion`.
    pub fn update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        status: bool,
        write: &Write,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        check_kind(resource, &mut object)?;
        string_data(&mut object);
        let key = key(resource, namespace, name);
        let current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if let Some(given) = object["metadata"]["resourceVersion"].as_str()
            && given != current["metadata"]["resourceVersion"]
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    qualified(resource)
                ),
            ));
        }
        if object["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut next = if status {
            let mut next = current.clone();
            next["status"] = object.get("status").cloned().unwrap_or(Value::Null);
            next
        } else {
            if resource.has_status() {
                match current.get("status") {
                    Some(s) => object["status"] = s.clone(),
                    None => {
                        object.as_object_mut().unwrap().remove("status");
                    }
                }
            }
            object
        };
        // What the server owns stays the server's.
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "generation",
        ] {
            match current["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    next["metadata"].as_object_mut().unwrap().remove(field);
                }
            }
        }
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        let managed_before = current["metadata"]["managedFields"].clone();
        next["metadata"]["managedFields"] = managed_before;
        if same(&next, &current) {
            // A write that changes nothing persists nothing.
            return Ok(current);
        }
        if resource.has_status() && !status && spec_of(&next) != spec_of(&current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            next["metadata"]["generation"] = json!(generation);
        }
        let operation = if write.manager.ends_with("(apply)") {
            "Apply"
        } else {
            "Update"
        };
        let manager = write.manager.trim_end_matches("(apply)");
        managed(
            next["metadata"].as_object_mut().unwrap(),
            manager,
            operation,
            &resource.api_version(),
        );
        self.admission
            .review(Review {
                operation: "UPDATE",
                resource,
                subresource: if status { "status" } else { "" },
                namespace,
                name,
                object: Some(&next),
                old_object: Some(&current),
                user: &write.user,
                dry_run: write.dry_run,
            })
            .map_err(|refusal| ApiError::new(403, "Forbidden", refusal))?;
        denied(&next)?;
        if write.dry_run {
            return Ok(next);
        }
        let finalized = next["metadata"].get("deletionTimestamp").is_some()
            && next["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if finalized {
            return Ok(self.remove(&mut inner, key, next, &write.user));
        }
        Ok(self.commit(&mut inner, key, "MODIFIED", next, &write.user))
    }

    /// Deletes an object: at once, or, while it has finalizers, by marking
    /// it. Its dependents (owner references) go with it.
    pub fn delete(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        write: &Write,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = key(resource, namespace, name);
        let current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        self.admission
            .review(Review {
                operation: "DELETE",
                resource,
                subresource: "",
                namespace,
                name: if write.named { name } else { "" },
                object: None,
                old_object: Some(&current),
                user: &write.user,
                dry_run: write.dry_run,
            })
            .map_err(|refusal| ApiError::new(403, "Forbidden", refusal))?;
        if write.dry_run {
            return Ok(current);
        }
        if current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut marked = current;
            marked["metadata"]["deletionTimestamp"] = json!(now());
            return Ok(self.commit(&mut inner, key, "MODIFIED", marked, &write.user));
        }
        Ok(self.remove(&mut inner, key, current, &write.user))
    }

    fn remove(&self, inner: &mut Inner, key: Key, object: Value, user: &str) -> Value {
        inner.objects.remove(&key);
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if key.1 == "customresourcedefinitions" {
            let defined = Resource::of_crd(&object);
            inner.resources.retain(|r| !defined.contains(r));
        }
        let deleted = self.commit(inner, key, "DELETED", object, user);
        // The garbage collector's part: dependents go in the background.
        let dependents: Vec<(Key, Value)> = inner
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        let collector = "system:serviceaccount:kube-system:generic-garbage-collector";
        for (key, object) in dependents {
            let resource = inner
                .resources
                .iter()
                .find(|r| r.group == key.0 && r.plural == key.1)
                .cloned();
            if let Some(resource) = resource {
                self.admission
                    .review(Review {
                        operation: "DELETE",
                        resource: &resource,
                        subresource: "",
                        namespace: Some(key.2.as_str()).filter(|n| !n.is_empty()),
                        name: &key.3,
                        object: None,
                        old_object: Some(&object),
                        user: collector,
                        dry_run: false,
                    })
                    // Only creates are enforced: a delete is never refused.
                    .expect("a delete is not enforced");
            }
            self.remove(inner, key, object, collector);
        }
        deleted
    }

    /// Persists a change: a new resourceVersion, the history, the watches.
    fn commit(
        &self,
        inner: &mut Inner,
        key: Key,
        kind: &'static str,
        mut object: Value,
        user: &str,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if kind != "DELETED" {
            inner.objects.insert(key.clone(), object.clone());
        }
        let change = Change {
            rv,
            key,
            kind,
            object: object.clone(),
            user: user.to_owned(),
        };
        inner.history.push_back(change.clone());
        if inner.history.len() > HISTORY
            && let Some(dropped) = inner.history.pop_front()
        {
            inner.compacted = dropped.rv;
        }
        // No watcher is not an error.
        let _ = self.changes.send(change);
        object
    }
}

/// A later validating webhook's refusal, after the one the tests watch
/// with admitted the write: what the label
/// `test.plumbline.dev/reject: "true"` asks for (mutationlab's
/// record-and-reject scenario).
fn denied(object: &Value) -> Result<(), ApiError> {
    if object["metadata"]["labels"]["test.plumbline.dev/reject"] == "true" {
        return Err(ApiError::new(
            403,
            "Forbidden",
            "admission webhook \"deny.plumbline.test\" denied the request: labelled to be rejected",
        ));
    }
    Ok(())
}

/// A CRD's resources are served from its creation on, and it says so.
fn establish(inner: &mut Inner, crd: &mut Value) {
    for resource in Resource::of_crd(crd) {
        inner.resources.retain(|r| {
            !(r.group == resource.group
                && r.version == resource.version
                && r.plural == resource.plural)
        });
        inner.resources.push(resource);
    }
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": now()},
        ],
        "storedVersions": crd["spec"]["versions"].as_array().map(|v| v.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()),
    });
}

/// The object's kind and apiVersion, given or filled in, must be the
/// resource's.
fn check_kind(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::new(400, "BadRequest", "the body is not an object"))?;
    let api_version = resource.api_version();
    for (field, want) in [
        ("apiVersion", api_version.as_str()),
        ("kind", resource.kind.as_str()),
    ] {
        match map.get(field).and_then(Value::as_str) {
            None => {
                map.insert(field.into(), json!(want));
            }
            Some(given) if given == want => {}
            Some(given) => {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("{field} `{given}` does not match the resource's `{want}`"),
                ));
            }
        }
    }
    Ok(())
}

/// A Secret's `stringData` is written into `data`, as the real server does.
fn string_data(object: &mut Value) {
    use base64::Engine as _;
    if object["kind"] != "Secret" {
        return;
    }
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    for (key, value) in strings {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap_or_default());
        object["data"][key] = json!(encoded);
    }
}

fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if resource.namespaced {
        namespace.unwrap_or_default()
    } else {
        ""
    };
    (
        resource.group.clone(),
        resource.plural.clone(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

fn rv_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether two versions of an object are the same but for what the server
/// writes on every change.
fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Everything but metadata and status: a change of it is a new generation.
fn spec_of(object: &Value) -> Map<String, Value> {
    let mut map = object.as_object().cloned().unwrap_or_default();
    map.remove("metadata");
    map.remove("status");
    map
}

/// Records `manager` in `managedFields`, one entry per manager and
/// operation, as server-side field management does (without the field
/// sets, which nothing here reads).
fn managed(meta: &mut Map<String, Value>, manager: &str, operation: &str, api_version: &str) {
    let manager = if manager.is_empty() {
        "unknown"
    } else {
        manager
    };
    let entries = meta
        .entry("managedFields")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut entries: Vec<Value> = entries
        .into_iter()
        .filter(|e| !(e["manager"] == manager && e["operation"] == operation))
        .collect();
    entries.push(json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {}},
    }));
    meta.insert("managedFields".into(), Value::Array(entries));
}

/// Five characters of `generateName`'s alphabet, from a serial.
fn suffix(serial: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Now, as the API server writes times (seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
