//! The ceiling: how fast a plain client writes status to the same objects
//! on the same apiserver. The operator does more per object than this
//! (reads, Redis, owned objects), so its throughput is reported as a ratio
//! of this number, measured in the same run.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use mcp_operator_chaos::converge::Observer;
use mcp_operator_chaos::kinds::Kind;

/// Writes one status condition to every reconciled object of `run`,
/// `concurrency` at a time; returns objects written per second.
pub async fn status_writes(
    observer: &mut Observer,
    run: &str,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let mut targets = Vec::new();
    for kind in Kind::RECONCILED {
        for object in observer.list(kind, run).await? {
            targets.push((kind, object));
        }
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let client = observer.client.clone();
    let started = Instant::now();
    let written = stream::iter(&targets)
        .map(|(kind, object): &(Kind, DynamicObject)| {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                &object.namespace().unwrap_or_default(),
                &kind.resource(),
            );
            let status = json!({"status": {
                "observedGeneration": object.metadata.generation,
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Ceiling",
                    "message": "Written by the load test's ceiling client.",
                    "lastTransitionTime": now, "observedGeneration": object.metadata.generation,
                }],
            }});
            async move {
                api.patch_status(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
                .map(|_| 1usize)
            }
        })
        .buffer_unordered(concurrency)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await?;
    observer.requests += targets.len() as u64;
    Ok(written as f64
        / started
            .elapsed()
            .max(Duration::from_millis(1))
            .as_secs_f64())
}
