//! A server's own Redis identity: the ACL user its routers authenticate
//! as, what that user may touch (patterns over the keys in
//! [`keys`](crate::keys)), and the Secret the operator hands its password
//! to the routers in.
//!
//! Kubernetes names hold no glob characters (`*`, `?`, `[`, `\`), so a
//! server's patterns match its own keys and channels only; the hash tag's
//! closing `}` keeps `team-a/x` from matching `team-a/xy`.

use sha2::{Digest, Sha256};

use crate::{ServerId, keys};

/// The ACL user of one server's routers. `/` appears in neither a
/// namespace nor a name, so no two servers share a user.
pub fn username(server: &ServerId) -> String {
    format!("mcp-router/{server}")
}

/// The keys the routers only read: the catalog and its version.
pub fn read_only_keys(server: &ServerId) -> [String; 2] {
    [keys::catalog(server), keys::version(server)]
}

/// The keys the routers read, write and expire: their sessions.
pub fn session_keys(server: &ServerId) -> String {
    keys::session(server, "*")
}

/// The channels the routers subscribe to.
pub fn subscribed_channels(server: &ServerId) -> [String; 2] {
    [keys::channel(server), keys::sessions_channel(server)]
}

/// The one channel the routers publish on (ended sessions).
pub fn published_channel(server: &ServerId) -> String {
    keys::sessions_channel(server)
}

/// The Secret in the server's namespace that holds its routers' Redis
/// credentials, under [`SECRET_USERNAME`] and [`SECRET_PASSWORD`].
pub fn secret_name(server_name: &str) -> String {
    format!("{server_name}-router-redis")
}

/// The key of the Secret that holds the ACL user name.
pub const SECRET_USERNAME: &str = "username";
/// The key of the Secret that holds the password.
pub const SECRET_PASSWORD: &str = "password";

/// A password as Redis ACL rules name it (`#<hash>`): its SHA-256, hex.
/// The operator keeps only this, where it can read it again (an annotation
/// on the router Deployment's pod template); the password itself is only
/// ever in the Secret.
pub fn password_sha256(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(namespace: &str, name: &str) -> ServerId {
        ServerId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A Redis glob `*` at the end only, as in the session pattern.
    fn matches(pattern: &str, key: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => pattern == key,
        }
    }

    #[test]
    fn patterns_cover_own_keys_and_no_neighbours() {
        let own = server("team-a", "x");
        let neighbour = server("team-a", "xy");
        assert!(matches(&session_keys(&own), &keys::session(&own, "s1")));
        for key in [
            keys::session(&neighbour, "s1"),
            keys::catalog(&own),
            keys::fence(&own),
        ] {
            assert!(!matches(&session_keys(&own), &key), "{key}");
        }
        assert!(!read_only_keys(&own).contains(&keys::catalog(&neighbour)));
        assert!(subscribed_channels(&own).contains(&published_channel(&own)));
        assert_ne!(username(&own), username(&neighbour));
    }

    #[test]
    fn password_hash_is_redis_sha256_hex() {
        // `echo -n secret | sha256sum`
        assert_eq!(
            password_sha256("secret"),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
    }
}
