//! Whether an object the operator owns is already as it would apply it, so
//! that a server reconcile (one per member batch, one per Deployment
//! status change) sends no server-side apply that would change nothing.
//! At a cold start those applies were a quarter of all apiserver requests.
//!
//! Two checks, both against the watch's copy of the object:
//! - it carries the digest of the desired object in [`APPLIED`], so any
//!   change of the desired object, a removed field included, is applied;
//! - every field the operator sets still has the value it set, so an edit
//!   by someone else is undone at the next reconcile, as an apply would.
//!
//! A field the apiserver rewrites (a quantity written as `0.5` comes back
//! as `500m`) fails the second check: that object is applied every time,
//! as it was before this check, not left wrong.

use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

/// The annotation holding the digest of what the operator last applied.
pub const APPLIED: &str = "kubemcp.io/applied";

/// Adds the [`APPLIED`] annotation: the digest of `object` without it.
pub fn stamp<K: Resource + Serialize>(object: &mut K) -> Result<(), serde_json::Error> {
    object.annotations_mut().remove(APPLIED);
    let digest = mcp_operator_catalog::digest(&serde_json::to_vec(object)?);
    object.annotations_mut().insert(APPLIED.to_owned(), digest);
    Ok(())
}

/// Whether `live` already holds every field of the stamped `desired`.
pub fn in_place<K: Serialize>(live: &K, desired: &K) -> bool {
    match (serde_json::to_value(live), serde_json::to_value(desired)) {
        (Ok(live), Ok(desired)) => covers(&live, &desired),
        _ => false,
    }
}

/// Whether `live` has every field of `desired` with the same value. Maps
/// may have more keys (defaults, other managers' fields); lists must match
/// element by element, since the operator sets every list it writes whole.
fn covers(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().all(|(key, want)| match live.get(key) {
                Some(have) => covers(have, want),
                None => want.is_null(),
            })
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| covers(l, d))
        }
        (live, desired) => live == desired,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use serde_json::json;

    use super::*;

    fn account(value: Value) -> ServiceAccount {
        serde_json::from_value(value).expect("a ServiceAccount")
    }

    #[test]
    fn defaults_and_other_fields_do_not_count_as_drift() {
        let desired =
            json!({"spec": {"ports": [{"name": "http", "port": 80}], "type": "ClusterIP"}});
        let live = json!({"spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "type": "ClusterIP",
            "clusterIP": "10.0.0.1",
        }, "status": {}});
        assert!(covers(&live, &desired));
    }

    #[test]
    fn a_changed_value_a_missing_field_or_another_list_is_drift() {
        let desired = json!({"a": {"b": "x", "list": [{"k": 1}]}});
        assert!(!covers(
            &json!({"a": {"b": "y", "list": [{"k": 1}]}}),
            &desired
        ));
        assert!(!covers(&json!({"a": {"list": [{"k": 1}]}}), &desired));
        assert!(!covers(
            &json!({"a": {"b": "x", "list": [{"k": 2}]}}),
            &desired
        ));
        assert!(!covers(
            &json!({"a": {"b": "x", "list": [{"k": 1}, {"k": 1}]}}),
            &desired
        ));
    }

    #[test]
    fn the_stamp_changes_with_any_desired_field_removal_included() {
        let mut full = account(json!({
            "metadata": {"name": "r", "labels": {"a": "1", "b": "2"}},
            "automountServiceAccountToken": false,
        }));
        let mut fewer = full.clone();
        fewer.metadata.labels.as_mut().expect("labels").remove("b");
        stamp(&mut full).expect("stamp");
        stamp(&mut fewer).expect("stamp");
        // The live object still has the removed label: only the stamp
        // tells that the apply would remove it.
        assert!(!in_place(&full, &fewer));
        assert!(in_place(&full, &full));

        let mut again = full.clone();
        stamp(&mut again).expect("stamp");
        assert_eq!(again, full, "stamping is idempotent");
    }
}
