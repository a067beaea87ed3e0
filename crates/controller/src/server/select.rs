//! The second stage: the members a server selects, read from the watches'
//! stores (no LIST), and their keys for the membership index.

use std::collections::BTreeSet;
use std::sync::Arc;

use mcp_operator_api::MCPServer;

use crate::context::Context;
use crate::member::Member;
use crate::server::assemble::Selection;
use crate::server::membership::{MemberKey, selected};

/// Every member of the three kinds that `server` selects now.
pub fn select(server: &MCPServer, ctx: &Context) -> Selection {
    Selection {
        tools: selected(server, &ctx.tools.state()),
        prompts: selected(server, &ctx.prompts.state()),
        resources: selected(server, &ctx.resources.state()),
    }
}

/// The keys of the members in `selection`.
pub fn member_keys(selection: &Selection) -> BTreeSet<MemberKey> {
    fn keys<M: Member>(members: &[Arc<M>]) -> impl Iterator<Item = MemberKey> + '_ {
        members.iter().map(|m| MemberKey::of(&**m))
    }
    keys(&selection.tools)
        .chain(keys(&selection.prompts))
        .chain(keys(&selection.resources))
        .collect()
}
