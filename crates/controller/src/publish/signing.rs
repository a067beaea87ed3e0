//! The key that signs every catalog (crates/catalog/src/signature.rs). It
//! lives in one Secret in the operator's namespace, which the first replica
//! to start creates with a new key; every other replica, then and later,
//! reads that Secret, so all sign with the same key. Data: `current`, the
//! signing key, and optionally `previous`, a second key routers still (or
//! already) trust during a rotation (docs/operations.md). Both are Ed25519
//! keys in PKCS#8 DER.

use anyhow::Context as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use mcp_operator_catalog::signature::{PublicKey, SigningKey, public_keys_value};

/// The data key of the signing key.
pub const CURRENT: &str = "current";
/// The data key of the other trusted key, if any.
pub const PREVIOUS: &str = "previous";

/// The signing key and every public key routers are told to trust.
#[derive(Debug)]
pub struct CatalogKeys {
    pub signing: SigningKey,
    pub trusted: Vec<PublicKey>,
}

impl CatalogKeys {
    /// The value of the routers' `MCP_CATALOG_PUBLIC_KEYS`.
    pub fn public_keys_value(&self) -> String {
        public_keys_value(&self.trusted)
    }
}

/// Reads the key Secret `name` in `namespace`, creating it with a new key
/// if there is none. Two replicas starting at once both try to create it;
/// the apiserver lets one win, and the other reads the winner's.
pub async fn load_or_create(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<CatalogKeys> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let secret = match api
        .get_opt(name)
        .await
        .with_context(|| format!("reading the catalog signing key Secret {namespace}/{name}"))?
    {
        Some(secret) => secret,
        None => {
            let created = api
                .create(&PostParams::default(), &new_secret(namespace, name)?)
                .await;
            match created {
                Ok(secret) => {
                    tracing::info!(secret = %format!("{namespace}/{name}"), "created a new catalog signing key");
                    secret
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    api.get(name).await.with_context(|| {
                        format!("reading {namespace}/{name} after another replica created it")
                    })?
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("creating the catalog signing key Secret {namespace}/{name}")
                    });
                }
            }
        }
    };
    let keys = from_secret(&secret)
        .with_context(|| format!("the catalog signing key Secret {namespace}/{name}"))?;
    tracing::info!(
        kid = keys.signing.public_key().kid(),
        trusted = keys.trusted.len(),
        "signing catalogs"
    );
    Ok(keys)
}

fn new_secret(namespace: &str, name: &str) -> anyhow::Result<Secret> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "mcp-operator".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        data: Some([(CURRENT.to_owned(), ByteString(SigningKey::generate()?))].into()),
        ..Secret::default()
    })
}

/// The keys in a Secret's data.
fn from_secret(secret: &Secret) -> anyhow::Result<CatalogKeys> {
    let data = secret.data.clone().unwrap_or_default();
    let key = |field: &str| -> anyhow::Result<Option<SigningKey>> {
        data.get(field)
            .map(|der| SigningKey::from_pkcs8(&der.0).with_context(|| format!("key {field:?}")))
            .transpose()
    };
    let signing = key(CURRENT)?.with_context(|| format!("no key {CURRENT:?}"))?;
    let mut trusted = vec![signing.public_key().clone()];
    trusted.extend(key(PREVIOUS)?.map(|k| k.public_key().clone()));
    Ok(CatalogKeys { signing, trusted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fields: &[(&str, Vec<u8>)]) -> Secret {
        Secret {
            data: Some(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.clone())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn a_new_secret_holds_one_usable_key() {
        let keys = from_secret(&new_secret("ops", "k").expect("a secret")).expect("keys");
        assert_eq!(keys.trusted, vec![keys.signing.public_key().clone()]);
        assert_eq!(keys.public_keys_value(), keys.trusted[0].to_string());
    }

    #[test]
    fn the_previous_key_is_trusted_but_does_not_sign() {
        let (current, previous) = (
            SigningKey::generate().expect("a key"),
            SigningKey::generate().expect("a key"),
        );
        let keys = from_secret(&secret(&[
            (CURRENT, current.clone()),
            (PREVIOUS, previous.clone()),
        ]))
        .expect("keys");
        let signing = SigningKey::from_pkcs8(&current).expect("a key");
        assert_eq!(keys.signing.public_key(), signing.public_key());
        assert_eq!(keys.trusted.len(), 2);
        // The order of the keys does not change the routers' env.
        let swapped =
            from_secret(&secret(&[(CURRENT, previous), (PREVIOUS, current)])).expect("keys");
        assert_eq!(swapped.public_keys_value(), keys.public_keys_value());
    }

    #[test]
    fn a_secret_without_a_usable_key_is_an_error() {
        for broken in [
            secret(&[]),
            secret(&[(PREVIOUS, SigningKey::generate().expect("a key"))]),
            secret(&[(CURRENT, b"not a key".to_vec())]),
        ] {
            assert!(from_secret(&broken).is_err());
        }
    }
}
