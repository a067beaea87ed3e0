//! The Secret that carries a server's router credentials for Redis,
//! `<server>-router-redis` in the server's namespace (owned by the server,
//! so it goes with it). Routers read it by `secretKeyRef`; the operator
//! only writes it: it may create, update and delete Secrets but never read
//! one, so it learns whether the Secret exists from a create that succeeds
//! or answers 409 (AlreadyExists).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::acl;
use serde_json::json;

use crate::error::Error;
use crate::server::workload;

/// A fresh random password: 32 bytes, hex.
pub fn generate() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn secret(
    server: &MCPServer,
    owner: &OwnerReference,
    username: &str,
    password: &str,
) -> Result<Secret, Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": acl::secret_name(&server.name_any()),
            "namespace": server.namespace(),
            "labels": workload::labels(server),
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "stringData": {
            (acl::SECRET_USERNAME): username,
            (acl::SECRET_PASSWORD): password,
        },
    }))
    .map_err(|source| Error::Build {
        what: "router Redis Secret",
        source,
    })
}

/// Creates the server's Secret with these credentials; `false` when it
/// exists already (and is left as it is).
pub async fn create(
    client: &Client,
    server: &MCPServer,
    owner: &OwnerReference,
    username: &str,
    password: &str,
) -> Result<bool, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &server.namespace().unwrap_or_default());
    let secret = secret(server, owner, username, password)?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Overwrites the server's Secret with these credentials, unconditionally
/// (an update without a resourceVersion): the operator cannot read what it
/// holds.
pub async fn replace(
    client: &Client,
    server: &MCPServer,
    owner: &OwnerReference,
    username: &str,
    password: &str,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &server.namespace().unwrap_or_default());
    let secret = secret(server, owner, username, password)?;
    api.replace(
        &acl::secret_name(&server.name_any()),
        &PostParams::default(),
        &secret,
    )
    .await?;
    Ok(())
}
