//! Enough of `/openapi/v3` for kubectl to know that the server validates
//! fields itself (`fieldValidation`), as every current server does, so that
//! `kubectl apply` and `create -f` validate server-side instead of
//! downloading schemas. The documents list each resource's operations with
//! their group-version-kind; they carry no schemas.

use super::resources::Resource;
use serde_json::{Value, json};

/// `api/v1`, `apis/apps/v1`: the path of a group-version's document.
fn path_of(resource: &Resource) -> String {
    if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}/{}", resource.group, resource.version)
    }
}

/// The root: where each group-version's document is.
pub fn root(resources: &[Resource]) -> Value {
    let mut paths = serde_json::Map::new();
    for resource in resources {
        let path = path_of(resource);
        let url = format!("/openapi/v3/{path}?hash=test");
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The document of the group-version at `path`, if one is served.
pub fn document(resources: &[Resource], path: &str) -> Option<Value> {
    let mine: Vec<&Resource> = resources.iter().filter(|r| path_of(r) == path).collect();
    if mine.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for resource in mine {
        let gvk =
            json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
        let validation =
            json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]);
        let operation = |id: &str| {
            json!({
                "operationId": format!("{id}{}", resource.kind),
                "x-kubernetes-group-version-kind": gvk,
                "parameters": validation,
                "responses": {"200": {"description": "OK"}},
            })
        };
        let base = if resource.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("/{path}/{}", resource.plural)
        };
        paths.insert(
            base.clone(),
            json!({"post": operation("create"), "get": operation("list")}),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": operation("read"), "put": operation("replace"), "patch": operation("patch"), "delete": operation("delete")}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
