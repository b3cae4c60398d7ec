//! A cluster object, as List or Watch gives it, made an [`Event`].
//!
//! The items of a List carry no apiVersion or kind (the list does); they
//! are set from the resource, so that every event's object reads as
//! `kubectl get -o json` shows it.

use crate::model::{Event, Operation, Target};
use kube::api::{ApiResource, DynamicObject};
use serde_json::Value;

/// The event of `object`, of the resource `resource`; `None` for an object
/// without a name (which the API server never sends).
pub fn event_of(
    resource: &ApiResource,
    object: &DynamicObject,
    operation: Operation,
) -> Option<Event> {
    let name = object.metadata.name.clone()?;
    let mut json = serde_json::to_value(object).ok()?;
    if let Some(map) = json.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::from(resource.api_version.as_str()));
        map.entry("kind")
            .or_insert_with(|| Value::from(resource.kind.as_str()));
    }
    let target = Target {
        group: resource.group.clone(),
        version: resource.version.clone(),
        kind: resource.kind.clone(),
        resource: resource.plural.clone(),
        subresource: None,
        namespace: object.metadata.namespace.clone(),
        name,
    };
    Some(Event {
        uid: object.metadata.uid.clone(),
        resource_version: object.metadata.resource_version.clone(),
        ..Event::new(operation, target, json.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> ApiResource {
        ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
        }
    }

    #[test]
    fn a_list_item_gets_its_kind_and_identity_from_the_resource() {
        let item: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42"},
            "spec": {"replicas": 2}
        }))
        .unwrap();
        let event = event_of(&deployments(), &item, Operation::Create).unwrap();
        assert_eq!(
            event.target.to_string(),
            Target {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                resource: "deployments".into(),
                subresource: None,
                namespace: Some("shop".into()),
                name: "web".into(),
            }
            .to_string()
        );
        assert_eq!(event.uid.as_deref(), Some("u-1"));
        assert_eq!(event.resource_version.as_deref(), Some("42"));
        let object: Value = serde_json::from_str(&event.object).unwrap();
        assert_eq!(object["apiVersion"], "apps/v1");
        assert_eq!(object["kind"], "Deployment");
        assert_eq!(object["spec"]["replicas"], 2);
        assert!(event.username.is_none(), "who made it is not known here");
    }

    #[test]
    fn an_object_without_a_name_is_no_event() {
        let item: DynamicObject = serde_json::from_value(json!({"metadata": {}})).unwrap();
        assert!(event_of(&deployments(), &item, Operation::Update).is_none());
    }
}
