//! Whose an object is: the operator patches or deletes an object of a
//! server's workload only when the server is its controller (by uid), so
//! an MCPServer named after an existing Service, ServiceAccount,
//! Deployment, Ingress or PodDisruptionBudget never takes it over (nor
//! has it garbage-collected with itself later).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::context::{Context, Object};
use crate::error::Error;

/// An object of a server's name that the server does not control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub kind: String,
    pub name: String,
}

impl Conflict {
    /// The one sentence of the server's `NameConflict` condition.
    pub fn message(&self) -> String {
        format!(
            "{} '{}' already exists and is not owned by this MCPServer; the operator leaves it alone: rename the server or remove that object.",
            self.kind, self.name
        )
    }
}

/// Whether `meta` names the object with uid `owner` as its controller.
pub fn controlled_by(meta: &ObjectMeta, owner: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == owner)
}

/// Whether `namespace/name` of kind K may be applied for the server with
/// uid `owner`: absent, or controlled by it.
///
/// The watch's store answers for objects it has. It does not prove
/// absence: the workload watches (but the Service one) see only objects
/// with the operator's managed-by label, and any store lags a fresh
/// creation. So an object the store lacks is looked up with one GET,
/// which costs a request only when the object is about to be created (or
/// while a foreign one is in the way), never for one already in place.
/// An object created by someone else between that GET and the apply would
/// still be taken: no Kubernetes write creates by server-side apply only
/// when absent, and a plain create would leave the fields to a manager
/// that later applies could not remove.
pub async fn check<K: Object + Send + Sync + 'static>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    store: &Store<K>,
    owner: &str,
) -> Result<Option<Conflict>, Error> {
    let conflict = || {
        Some(Conflict {
            kind: K::kind(&()).into_owned(),
            name: name.to_owned(),
        })
    };
    if let Some(live) = store.get(&ObjectRef::new(name).within(namespace)) {
        return Ok(if controlled_by(live.meta(), owner) {
            None
        } else {
            conflict()
        });
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(match api.get_opt(name).await? {
        Some(live) if !controlled_by(live.meta(), owner) => conflict(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owned_by(references: Vec<(&str, Option<bool>)>) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(
                references
                    .into_iter()
                    .map(|(uid, controller)| OwnerReference {
                        api_version: "kubemcp.io/v1alpha1".into(),
                        kind: "MCPServer".into(),
                        name: "s".into(),
                        uid: uid.into(),
                        controller,
                        block_owner_deletion: None,
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_the_controller_by_uid_owns_the_object() {
        assert!(controlled_by(&owned_by(vec![("u1", Some(true))]), "u1"));
        // No owner, another server of the same name (a new uid after a
        // delete and recreate), or the uid only as a non-controller owner.
        assert!(!controlled_by(&ObjectMeta::default(), "u1"));
        assert!(!controlled_by(&owned_by(vec![("u0", Some(true))]), "u1"));
        assert!(!controlled_by(&owned_by(vec![("u1", None)]), "u1"));
        assert!(!controlled_by(&owned_by(vec![("u1", Some(false))]), "u1"));
        assert!(controlled_by(
            &owned_by(vec![("other", None), ("u1", Some(true))]),
            "u1"
        ));
    }

    #[test]
    fn the_message_names_the_object() {
        let conflict = Conflict {
            kind: "Service".into(),
            name: "weather".into(),
        };
        assert!(
            conflict
                .message()
                .starts_with("Service 'weather' already exists and is not owned by this MCPServer")
        );
    }
}
