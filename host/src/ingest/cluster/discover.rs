//! Discovery, one API group at a time, so that one group that does not
//! answer (an aggregated API whose server is down, as metrics-server often
//! is) costs only its own resources, not the whole cluster's: kube's
//! `Discovery::run` fails whole when any group fails.
//!
//! Only the groups a rule could select are asked, each at its preferred
//! version (what `recommended_resources` reads): one request per group.

use super::Selector;
use kube::discovery::{ApiGroup, pinned_group};

/// What a discovery found.
pub struct Found {
    /// The groups that answered.
    pub groups: Vec<ApiGroup>,
    /// The groups that did not (the core group is `""`), with why.
    pub failed: Vec<(String, kube::Error)>,
}

/// Asks the groups `selector` could select; an error only when the list
/// of groups itself cannot be had.
pub async fn groups(client: &kube::Client, selector: &Selector) -> Result<Found, kube::Error> {
    let mut found = Found {
        groups: Vec::new(),
        failed: Vec::new(),
    };
    if selector.may_select_group("") {
        match kube::discovery::group(client, "").await {
            Ok(group) => found.groups.push(group),
            Err(error) => found.failed.push((String::new(), error)),
        }
    }
    for group in client.list_api_groups().await?.groups {
        if !selector.may_select_group(&group.name) {
            continue;
        }
        let preferred = group
            .preferred_version
            .clone()
            .or_else(|| group.versions.first().cloned());
        let Some(version) = preferred else {
            continue;
        };
        let gv = kube::core::GroupVersion::gv(&group.name, &version.version);
        match pinned_group(client, &gv).await {
            Ok(answered) => found.groups.push(answered),
            Err(error) => found.failed.push((group.name, error)),
        }
    }
    Ok(found)
}
