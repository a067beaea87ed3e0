//! Which nodes hold ACLs: Redis Cluster keeps users per node, so every
//! primary and replica gets each user. The node list is `CLUSTER NODES`,
//! read through the operator's own connection.

/// One node able to take commands, as `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node(pub String);

impl Node {
    /// The node's URL, with the scheme (`redis` or `rediss`) of the seeds.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.0)
    }
}

/// The nodes of a `CLUSTER NODES` reply that can take commands: every
/// primary and replica but those marked failed, still in handshake or
/// without an address (they get the users once they are back, at the next
/// verification).
pub fn parse(reply: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = reply
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _id = fields.next()?;
            let address = fields.next()?;
            let flags = fields.next()?;
            let unusable = flags
                .split(',')
                .any(|flag| matches!(flag, "fail" | "handshake" | "noaddr"));
            if unusable {
                return None;
            }
            // ip:port@cport[,hostname]; an IPv6 address has colons itself.
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            if host.is_empty() || port == "0" || port.parse::<u16>().is_err() {
                return None;
            }
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            Some(Node(format!("{host}:{port}")))
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The scheme of a seed URL (`rediss` for TLS, else `redis`).
pub fn scheme(url: &str) -> &'static str {
    if url.starts_with("rediss://") {
        "rediss"
    } else {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_primary_and_replica_with_an_address() {
        let reply = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 disconnected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail? 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 handshake - 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
a1b2 :0@0 noaddr - 0 0 0 disconnected
c3d4 ::1:30007@31007 slave e7d1 0 0 7 connected
";
        let urls: Vec<String> = parse(reply).iter().map(|n| n.url("redis")).collect();
        assert_eq!(
            urls,
            [
                "redis://127.0.0.1:30001",
                "redis://127.0.0.1:30002",
                "redis://127.0.0.1:30004",
                "redis://127.0.0.1:30005",
                "redis://[::1]:30007",
            ]
        );
    }

    #[test]
    fn tls_seeds_give_tls_node_urls() {
        assert_eq!(scheme("rediss://redis-0:6379"), "rediss");
        assert_eq!(scheme("redis://redis-0:6379"), "redis");
    }
}
