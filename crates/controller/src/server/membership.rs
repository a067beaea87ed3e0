//! Which MCPServers a member belongs to.
//!
//! A member event must reach the servers that select it now and the servers
//! that held it before the change (a label change moves it from one to the
//! other), but the watch only delivers the new object. So every server
//! reconcile records the members it selected, and the mapper unions that
//! record with a fresh match of the selectors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use kube::{Resource, ResourceExt};
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::ServerId;

use crate::member::{Kind, Member};

/// A member object, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl MemberKey {
    pub fn of<M: Member>(member: &M) -> Self {
        Self {
            kind: M::KIND,
            namespace: member.namespace().unwrap_or_default(),
            name: member.name_any(),
        }
    }
}

/// The identity of a server object.
pub fn server_id(server: &MCPServer) -> ServerId {
    ServerId {
        namespace: server.namespace().unwrap_or_default(),
        name: server.name_any(),
    }
}

/// Whether `selector` picks an object with `labels`. An absent selector
/// selects nothing; an empty one selects everything (as for Kubernetes
/// label selectors). An invalid one selects nothing; the server reports it.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    parsed(selector).is_some_and(|s| s.matches(labels))
}

/// A selector ready to match, or `None` if it selects nothing.
fn parsed(selector: Option<&LabelSelector>) -> Option<Selector> {
    selector.cloned().and_then(|s| Selector::try_from(s).ok())
}

/// The members of kind `M` in `server`'s namespace that it selects, sorted
/// by name. Runs over every member at every server reconcile, so the
/// selector is parsed once and nothing is allocated per member.
pub fn selected<M: Member>(server: &MCPServer, members: &[Arc<M>]) -> Vec<Arc<M>> {
    let Some(selector) = parsed(M::selector(&server.spec)) else {
        return Vec::new();
    };
    let namespace = server.meta().namespace.as_deref();
    let mut chosen: Vec<Arc<M>> = members
        .iter()
        .filter(|m| m.meta().namespace.as_deref() == namespace && selector.matches(m.labels()))
        .cloned()
        .collect();
    chosen.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    chosen
}

/// What every server selected at its last reconcile, both ways round.
#[derive(Debug, Default)]
pub struct Membership {
    members_of: HashMap<ServerId, BTreeSet<MemberKey>>,
    servers_of: HashMap<MemberKey, BTreeSet<ServerId>>,
}

impl Membership {
    /// Replaces what `server` selects.
    pub fn record(&mut self, server: &ServerId, members: BTreeSet<MemberKey>) {
        self.forget(server);
        for member in &members {
            self.servers_of
                .entry(member.clone())
                .or_default()
                .insert(server.clone());
        }
        self.members_of.insert(server.clone(), members);
    }

    /// Drops a deleted server.
    pub fn forget(&mut self, server: &ServerId) {
        for member in self.members_of.remove(server).unwrap_or_default() {
            if let Some(servers) = self.servers_of.get_mut(&member) {
                servers.remove(server);
                if servers.is_empty() {
                    self.servers_of.remove(&member);
                }
            }
        }
    }

    /// The servers a change to `member` concerns: those whose selector
    /// matches it now, and those that selected it before.
    pub fn servers_for<M: Member>(
        &self,
        member: &M,
        servers: &[Arc<MCPServer>],
    ) -> BTreeSet<ServerId> {
        let key = MemberKey::of(member);
        let mut affected = self.servers_of.get(&key).cloned().unwrap_or_default();
        affected.extend(
            servers
                .iter()
                .filter(|s| s.meta().namespace.as_deref() == Some(key.namespace.as_str()))
                .filter(|s| selects(M::selector(&s.spec), member.labels()))
                .map(|s| server_id(s)),
        );
        affected
    }
}

#[cfg(test)]
mod tests {
    use mcp_operator_api::MCPTool;

    use super::*;

    fn server(name: &str, team: &str) -> Arc<MCPServer> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"toolSelector": {"matchLabels": {"team": team}}},
            }))
            .expect("a server"),
        )
    }

    fn tool(team: &str) -> MCPTool {
        named_tool("t", "ns", team)
    }

    fn named_tool(name: &str, namespace: &str, team: &str) -> MCPTool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": team}},
            "spec": {"inputSchema": {"type": "object"}, "backend": {"service": {"name": "s", "port": 80}}},
        }))
        .expect("a tool")
    }

    fn ids(names: &[&str]) -> BTreeSet<ServerId> {
        names
            .iter()
            .map(|n| ServerId {
                namespace: "ns".into(),
                name: (*n).into(),
            })
            .collect()
    }

    #[test]
    fn a_relabelled_member_concerns_its_old_and_new_server() {
        let servers = vec![server("a", "red"), server("b", "blue")];
        let mut membership = Membership::default();
        assert_eq!(membership.servers_for(&tool("red"), &servers), ids(&["a"]));
        membership.record(
            &server_id(&servers[0]),
            BTreeSet::from([MemberKey::of(&tool("red"))]),
        );
        // Relabelled to blue: b selects it now, a held it before.
        assert_eq!(
            membership.servers_for(&tool("blue"), &servers),
            ids(&["a", "b"])
        );
        // Once a has reconciled without it, only b is concerned.
        membership.record(&server_id(&servers[0]), BTreeSet::new());
        assert_eq!(membership.servers_for(&tool("blue"), &servers), ids(&["b"]));
        membership.forget(&server_id(&servers[0]));
        assert!(membership.servers_of.is_empty() && membership.members_of.is_empty());
    }

    #[test]
    fn absent_selectors_select_nothing_and_empty_ones_everything() {
        let labels = BTreeMap::from([("team".to_owned(), "red".to_owned())]);
        assert!(!selects(None, &labels));
        assert!(selects(Some(&LabelSelector::default()), &labels));
    }

    #[test]
    fn a_server_selects_matching_members_of_its_namespace_by_name() {
        let tools: Vec<Arc<MCPTool>> = [
            ("c", "ns", "red"),
            ("a", "ns", "red"),
            ("b", "ns", "blue"),
            ("d", "other", "red"),
        ]
        .into_iter()
        .map(|(name, namespace, team)| Arc::new(named_tool(name, namespace, team)))
        .collect();
        let names = |chosen: Vec<Arc<MCPTool>>| -> Vec<String> {
            chosen.iter().map(|t| t.name_any()).collect()
        };
        assert_eq!(names(selected(&server("s", "red"), &tools)), ["a", "c"]);
        let mut without = (*server("s", "red")).clone();
        without.spec.tool_selector = None;
        assert!(selected(&without, &tools).is_empty());
    }
}
