//! Status conditions: the desired set for this reconcile, merged into the
//! existing ones so that `lastTransitionTime` moves only when a status
//! flips, and every condition says which generation it describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types.
pub const READY: &str = "Ready";
pub const SCHEMA_VALID: &str = "SchemaValid";
pub const BACKEND_RESOLVED: &str = "BackendResolved";
pub const CATALOG_PUBLISHED: &str = "CatalogPublished";
pub const DEPLOYMENT_AVAILABLE: &str = "DeploymentAvailable";
pub const REDIS_ISOLATED: &str = "RedisIsolated";

/// One condition as a reconcile decides it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// The conditions to write: `desired`, in its order, with the transition
/// time of an existing condition kept when its status is unchanged.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let last_transition_time = existing
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: d.type_.to_owned(),
                status: status.to_owned(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `Ready` describes `generation`, True or not: the member has been
/// checked since its spec last changed.
pub fn is_checked_for(conditions: &[Condition], generation: Option<i64>) -> bool {
    find(conditions, READY).is_some_and(|c| c.observed_generation == generation)
}

/// Whether `Ready` is True and describes `generation`: a member whose
/// spec changed since it was last checked is not served until it has been
/// checked again.
pub fn is_ready_for(conditions: &[Condition], generation: Option<i64>) -> bool {
    find(conditions, READY)
        .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid timestamp")
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(
            &[],
            &[Desired::new(READY, false, "Pending", "Waiting.")],
            Some(1),
            at(10),
        );
        let same = merge(
            &first,
            &[Desired::new(READY, false, "Other", "Still waiting.")],
            Some(2),
            at(20),
        );
        assert_eq!(same[0].last_transition_time, Time(at(10)));
        assert_eq!(same[0].reason, "Other");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            &[Desired::new(READY, true, "Ready", "Done.")],
            Some(2),
            at(30),
        );
        assert_eq!(flipped[0].last_transition_time, Time(at(30)));
    }

    #[test]
    fn ready_means_ready_for_this_generation() {
        let ready = merge(
            &[],
            &[Desired::new(READY, true, "Ready", "Done.")],
            Some(3),
            at(1),
        );
        assert!(is_ready_for(&ready, Some(3)));
        assert!(!is_ready_for(&ready, Some(4)));
        assert!(!is_ready_for(&[], Some(3)));
    }
}
