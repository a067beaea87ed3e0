//! Writing status by server-side apply: the status is always written whole,
//! so a field the operator stops setting (an endpoint that no longer
//! resolves, an empty exclusion list) is removed rather than left stale, as
//! a merge patch would leave it. The apply carries the resourceVersion the
//! reconcile read, so a replica acting on an old view (one that just lost
//! the shard) gets a conflict instead of clobbering newer status.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use crate::context::{Context, FIELD_MANAGER, Object};
use crate::error::Error;

pub async fn apply<K: Object>(
    ctx: &Context,
    object: &K,
    mut status: serde_json::Value,
) -> Result<(), Error> {
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
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&object.name_any(), &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(()),
        // The object changed since this reconcile read it. The watch brings
        // the newer version, but if only its status changed (another
        // replica's late write) the controllers' predicates drop that
        // event, so retry rather than wait for it.
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict),
        Err(error) => Err(error.into()),
    }
}
