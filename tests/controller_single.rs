//! The controllers against the real apiserver, publishing to the
//! single Redis node.

mod controller;
mod support;

controller_cases!(controller::Redis::Single);

/// Replicas that start at once, with no key yet, all end with the one key
/// the apiserver let one of them create.
#[tokio::test]
async fn replicas_starting_at_once_share_one_signing_key() {
    let client = support::client().await;
    let ns = support::namespace(&client, "signing").await;
    let name = "mcp-operator-catalog-signing";
    let starts =
        (0..4).map(|_| mcp_operator_controller::load_signing_keys(client.clone(), &ns, name));
    let keys: std::collections::BTreeSet<String> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|keys| keys.expect("the signing key").public_keys_value())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let secret = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .get(name)
        .await
        .expect("the key Secret");
    assert_eq!(
        secret
            .metadata
            .labels
            .unwrap_or_default()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("mcp-operator")
    );
    // A later start reads the same key.
    let again = mcp_operator_controller::load_signing_keys(client, &ns, name)
        .await
        .expect("the signing key");
    assert!(keys.contains(&again.public_keys_value()));
}
