//! The test environment is a real cluster: optimistic concurrency, the
//! scheduler with kwok nodes, and the garbage collector all work.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::conditions;
use serde_json::json;

#[tokio::test]
async fn lease_update_with_a_stale_resource_version_conflicts() {
    let client = support::client().await;
    let ns = support::namespace(&client, "lease").await;
    let leases: Api<Lease> = Api::namespaced(client, &ns);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "shard-0" },
        "spec": { "holderIdentity": "replica-a", "leaseDurationSeconds": 5 }
    }))
    .expect("a Lease");
    let first = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create Lease");

    let mut taken = first.clone();
    taken.spec.get_or_insert_default().holder_identity = Some("replica-b".into());
    leases
        .replace("shard-0", &PostParams::default(), &taken)
        .await
        .expect("update with the current resourceVersion");

    // `first` still carries the resourceVersion replica-b's update replaced.
    let mut stale = first;
    stale.spec.get_or_insert_default().holder_identity = Some("replica-c".into());
    match leases
        .replace("shard-0", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("a stale update must conflict, got {other:?}"),
    }
    let current = leases.get("shard-0").await.expect("get Lease");
    assert_eq!(
        current.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-b")
    );
}

#[tokio::test]
async fn a_deployment_gets_a_running_pod_on_a_kwok_node() {
    let client = support::client().await;
    let ns = support::namespace(&client, "deploy").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] }
            }
        }
    }))
    .expect("a Deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");

    support::wait_for(&deployments, "web", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            == Some(1)
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(list.items.len(), 1);
    let pod = &list.items[0];
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    assert_eq!(phase, Some("Running"));
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .expect("scheduled");
    assert!(!node.is_empty(), "the scheduler bound the pod to a node");
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let client = support::client().await;
    let ns = support::namespace(&client, "gc").await;
    let maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let owner: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "owner" } })).expect("owner");
    let owner = maps
        .create(&PostParams::default(), &owner)
        .await
        .expect("create owner");
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "owner",
                "uid": owner.metadata.uid.clone().expect("uid"),
            }]
        }
    }))
    .expect("dependent");
    let dependent = maps
        .create(&PostParams::default(), &dependent)
        .await
        .expect("create dependent");

    maps.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    let uid = dependent.metadata.uid.expect("uid");
    support::wait_for(&maps, "dependent", conditions::is_deleted(&uid)).await;
}
