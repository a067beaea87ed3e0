//! The ACL rules of one server's router user: exactly the commands the
//! router sends (crates/router: sync.rs reads the catalog and version and
//! subscribes, session.rs reads, writes and deletes sessions and publishes
//! ended ones), on exactly its own keys and channels.

use mcp_operator_catalog::{ServerId, acl};

/// Commands a router needs on any connection: authenticating (HELLO on
/// the RESP3 subscriber), the pool's health check, and what the cluster
/// client sends to find the slots.
const CONNECTION: [&str; 6] = [
    "+auth",
    "+hello",
    "+ping",
    "+readonly",
    "+cluster|slots",
    "+cluster|shards",
];

/// Commands on keys: GET of the catalog and version (`%R~`, read only),
/// GETEX/SET/DEL of sessions.
const KEYS: [&str; 4] = ["+get", "+getex", "+set", "+del"];

/// The arguments of `ACL SETUSER` that make the server's user what it
/// must be, whatever it was before (`reset` first), with the password given
/// by its SHA-256.
pub fn setuser(server: &ServerId, password_sha256: &str) -> Vec<String> {
    let mut rules = vec![
        acl::username(server),
        "reset".to_owned(),
        "resetchannels".to_owned(),
        "on".to_owned(),
        format!("#{password_sha256}"),
    ];
    rules.extend(CONNECTION.iter().chain(&KEYS).map(|c| (*c).to_owned()));
    rules.extend(acl::read_only_keys(server).map(|key| format!("%R~{key}")));
    rules.push(format!("~{}", acl::session_keys(server)));
    // Publishing only on the sessions channel; subscribing to both, in a
    // selector: channel patterns are not per command otherwise.
    rules.push("+publish".to_owned());
    rules.push(format!("&{}", acl::published_channel(server)));
    let subscribed = acl::subscribed_channels(server)
        .map(|channel| format!(" &{channel}"))
        .concat();
    rules.push(format!("(+subscribe{subscribed})"));
    rules
}

/// An `ACL GETUSER` reply in a form equal on every node: each node lists
/// a user's commands in the order of its own hash table, so the words of
/// every rule string are sorted.
pub fn canonical(user: redis::Value) -> redis::Value {
    use redis::Value;
    match user {
        Value::BulkString(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let mut words: Vec<&str> = text.split(' ').collect();
                words.sort_unstable();
                Value::BulkString(words.join(" ").into_bytes())
            }
            Err(error) => Value::BulkString(error.into_bytes()),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_user_listed_in_two_orders_is_one_user() {
        use redis::Value;
        let user = |commands: &str| {
            Value::Array(vec![
                Value::BulkString(b"commands".to_vec()),
                Value::BulkString(commands.as_bytes().to_vec()),
                Value::Array(vec![Value::BulkString(b"passwords".to_vec())]),
            ])
        };
        assert_eq!(
            canonical(user("-@all +get +set +cluster|slots")),
            canonical(user("-@all +cluster|slots +set +get"))
        );
        assert_ne!(
            canonical(user("-@all +get")),
            canonical(user("-@all +get +keys"))
        );
    }

    #[test]
    fn rules_name_only_the_servers_own_keys_and_channels() {
        let server = ServerId {
            namespace: "team-a".into(),
            name: "weather".into(),
        };
        let rules = setuser(&server, "ab12").join(" ");
        assert_eq!(
            rules,
            "mcp-router/team-a/weather reset resetchannels on #ab12 \
             +auth +hello +ping +readonly +cluster|slots +cluster|shards \
             +get +getex +set +del \
             %R~mcp:{team-a/weather}:catalog %R~mcp:{team-a/weather}:version \
             ~mcp:{team-a/weather}:session:* \
             +publish &mcp:{team-a/weather}:sessions \
             (+subscribe &mcp:{team-a/weather}:invalidate &mcp:{team-a/weather}:sessions)"
        );
        // Nothing broad: no category, no other key or channel.
        for broad in ["+@", "~*", "&*", "allkeys", "allchannels", "nopass"] {
            assert!(!rules.contains(broad), "{broad} in {rules}");
        }
    }
}
