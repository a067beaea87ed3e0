//! How long each server has put off publishing while some of its members
//! wait to be checked. A member whose spec changed is left out of the
//! catalog until its check, so publishing before then would make it vanish
//! from the routers and come back a moment later (and a cold start would
//! publish each server once per member). Its check writes status, which
//! triggers the server again; but a member whose status cannot be written
//! must not hold back the others for ever, hence a bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mcp_operator_catalog::ServerId;

/// The longest a server puts off publishing.
pub const MAX: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Deferrals {
    since: Mutex<HashMap<ServerId, Instant>>,
}

impl Deferrals {
    /// Whether `server` may still put off publishing at `now`; counts from
    /// its first deferral since it last published.
    pub fn defer(&self, server: &ServerId, now: Instant) -> bool {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let first = *since.entry(server.clone()).or_insert(now);
        now.duration_since(first) < MAX
    }

    /// `server` published (or is gone): the next deferral starts afresh.
    pub fn clear(&self, server: &ServerId) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        since.remove(server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_defers_for_at_most_the_bound_then_afresh_after_publishing() {
        let deferrals = Deferrals::default();
        let server = ServerId {
            namespace: "n".into(),
            name: "s".into(),
        };
        let start = Instant::now();
        assert!(deferrals.defer(&server, start));
        assert!(deferrals.defer(&server, start + MAX / 2));
        assert!(!deferrals.defer(&server, start + MAX));
        deferrals.clear(&server);
        assert!(deferrals.defer(&server, start + MAX));
    }
}
