//! Which namespaces the operator reconciles: all of them, or with
//! `--namespace-selector` only those whose labels match (the confined
//! install, docs/security.md). The operator watches the matching
//! Namespaces, metadata only, and lets the apiserver match the selector:
//! a namespace that stops matching arrives as a deletion, one that starts
//! as an addition, so a label change takes effect without a restart.
//! Objects elsewhere get no write at all: no status, no finalizer, no
//! workload, no Event.

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;

use crate::runtime::telemetry;

/// Room for namespaces selected while a consumer is busy; a consumer that
/// falls further behind misses some, as it would miss a gained shard.
const BUFFER: usize = 256;

/// The namespaces the operator reconciles.
pub struct Scope {
    /// The matching namespaces, or `None` for every namespace.
    selected: Option<Store<PartialObjectMeta<Namespace>>>,
    /// Names of namespaces as they come to match.
    entered: broadcast::Sender<String>,
}

impl Scope {
    /// Every namespace.
    pub fn all() -> Self {
        Self {
            selected: None,
            entered: broadcast::channel(1).0,
        }
    }

    /// The namespaces whose labels match `selector`, watched from now on.
    /// The selector is tried with one LIST first, so that a malformed one
    /// stops the operator with the apiserver's reason instead of a watch
    /// that retries for ever. `filled` turns true once the first list is in.
    pub async fn selected(
        client: &Client,
        selector: &str,
    ) -> anyhow::Result<(Self, tokio::sync::watch::Receiver<bool>)> {
        let api: Api<Namespace> = Api::all(client.clone());
        api.list_metadata(&ListParams::default().labels(selector).limit(1))
            .await
            .map_err(|error| match error {
                kube::Error::Api(status) => anyhow::anyhow!(
                    "--namespace-selector '{selector}': the apiserver refused it: {}",
                    status.message
                ),
                other => anyhow::anyhow!("--namespace-selector '{selector}': {other}"),
            })?;
        // An Api of PartialObjectMeta asks for metadata only.
        let metadata: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let (store, writer) = reflector::store();
        let (entered, _) = broadcast::channel(BUFFER);
        let (filled_tx, filled) = tokio::sync::watch::channel(false);
        let events = watcher::watcher(metadata, watcher::Config::default().labels(selector))
            .default_backoff()
            .modify(|namespace| namespace.managed_fields_mut().clear())
            .reflect(writer);
        let tx = entered.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut members = Members::default();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        for name in members.apply(&event) {
                            tracing::info!(namespace = %name, "namespace selected");
                            let _ = tx.send(name);
                        }
                        if matches!(event, watcher::Event::InitDone) {
                            filled_tx.send_replace(true);
                        }
                        telemetry::namespaces_selected(members.len());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the Namespace watch failed; retrying with backoff");
                    }
                }
            }
        });
        let scope = Self {
            selected: Some(store),
            entered,
        };
        Ok((scope, filled))
    }

    /// Whether objects of `namespace` are reconciled.
    pub fn includes(&self, namespace: &str) -> bool {
        self.selected
            .as_ref()
            .is_none_or(|store| store.get(&ObjectRef::new(namespace)).is_some())
    }

    /// Namespaces as they come to match (never, without a selector).
    pub fn entered(&self) -> broadcast::Receiver<String> {
        self.entered.subscribe()
    }
}

/// The names the watch has reported as matching, to tell which of its
/// events bring a namespace in: an addition, or one that a relist (after
/// the watch lost its place) finds and the previous list did not have.
#[derive(Debug, Default)]
struct Members {
    current: BTreeSet<String>,
    /// The relist in progress.
    listing: Option<BTreeSet<String>>,
}

impl Members {
    /// Applies one watch event; returns the namespaces it brings in.
    fn apply(&mut self, event: &watcher::Event<PartialObjectMeta<Namespace>>) -> Vec<String> {
        match event {
            watcher::Event::Apply(namespace) => {
                let name = namespace.name_any();
                if self.current.insert(name.clone()) {
                    vec![name]
                } else {
                    vec![]
                }
            }
            watcher::Event::Delete(namespace) => {
                self.current.remove(&namespace.name_any());
                vec![]
            }
            watcher::Event::Init => {
                self.listing = Some(BTreeSet::new());
                vec![]
            }
            watcher::Event::InitApply(namespace) => {
                self.listing
                    .get_or_insert_default()
                    .insert(namespace.name_any());
                vec![]
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let entered = listed.difference(&self.current).cloned().collect();
                self.current = listed;
                entered
            }
        }
    }

    fn len(&self) -> usize {
        self.current.len()
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;

    use super::*;

    fn namespace(name: &str) -> PartialObjectMeta<Namespace> {
        let mut namespace = PartialObjectMeta::<Namespace>::default();
        namespace.metadata.name = Some(name.to_owned());
        namespace
    }

    #[test]
    fn a_namespace_enters_once_and_leaves_with_its_label() {
        let mut members = Members::default();
        assert_eq!(members.apply(&Event::Apply(namespace("a"))), ["a"]);
        // Another change of a matching namespace (a label, an annotation).
        assert!(members.apply(&Event::Apply(namespace("a"))).is_empty());
        // The apiserver reports a namespace that stops matching as deleted.
        assert!(members.apply(&Event::Delete(namespace("a"))).is_empty());
        assert_eq!(members.len(), 0);
        assert_eq!(members.apply(&Event::Apply(namespace("a"))), ["a"]);
    }

    #[test]
    fn a_relist_brings_in_only_what_the_last_list_lacked() {
        let mut members = Members::default();
        let list = |members: &mut Members, names: &[&str]| {
            let mut entered = members.apply(&Event::Init);
            for name in names {
                entered.extend(members.apply(&Event::InitApply(namespace(name))));
            }
            entered.extend(members.apply(&Event::InitDone));
            entered
        };
        assert_eq!(list(&mut members, &["a", "b"]), ["a", "b"]);
        // The watch lost its place: "b" lost its label meanwhile, "c"
        // gained it.
        assert_eq!(list(&mut members, &["a", "c"]), ["c"]);
        assert_eq!(members.len(), 2);
        assert!(members.apply(&Event::Apply(namespace("c"))).is_empty());
    }

    #[test]
    fn the_scope_follows_the_store() {
        assert!(Scope::all().includes("anything"));
        let (store, mut writer) = reflector::store();
        let scope = Scope {
            selected: Some(store),
            entered: broadcast::channel(1).0,
        };
        assert!(!scope.includes("team-a"));
        writer.apply_watcher_event(&Event::Apply(namespace("team-a")));
        assert!(scope.includes("team-a"));
        assert!(!scope.includes("team-b"));
        writer.apply_watcher_event(&Event::Delete(namespace("team-a")));
        assert!(!scope.includes("team-a"));
    }
}
