//! Writing status by server-side apply: the status is always written whole,
//! so a field the operator stops setting (an endpoint that no longer
//! resolves, an empty exclusion list) is removed rather than left stale, as
//! a merge patch would leave it. The apply carries the resourceVersion the
//! reconcile read, so a replica acting on an old view (one that just lost
//! the shard) gets a conflict instead of clobbering newer status.

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;

pub async fn apply<K>(ctx: &Context, object: &K, mut status: serde_json::Value) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|_, value| !value.is_null());
    }
    let namespace = object.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": object.resource_version()},
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}
