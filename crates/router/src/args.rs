//! The router's command-line flags; each also reads the environment
//! variable the operator's Deployment sets (crates/controller/src/server/workload.rs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mcp_operator_catalog::ServerId;
use mcp_operator_catalog::router::{self, env};
use mcp_operator_catalog::signature::{PUBLIC_KEYS_ENV, TrustedKeys};
use mcp_operator_store::RedisArgs;

/// Everything `mcp-operator router` is configured with.
#[derive(Args, Clone, Debug)]
pub struct RouterArgs {
    /// The MCPServer whose catalog this router serves, as namespace/name.
    #[arg(long, env = env::SERVER, value_parser = parse_server)]
    pub server: ServerId,

    /// The public keys whose signatures on the catalog this router trusts,
    /// as `<kid>:<base64>`, comma-separated (two during a key rotation).
    /// The operator sets them on every router Deployment; a router without
    /// one does not start, since it could not tell the operator's catalog
    /// from one anyone with write access to Redis made up (docs/security.md).
    #[arg(long, env = PUBLIC_KEYS_ENV, required = true)]
    pub catalog_public_keys: TrustedKeys,

    /// Address the MCP endpoint (/mcp), probes and /metrics listen on.
    #[arg(long, env = env::LISTEN, default_value_t = SocketAddr::from(([0, 0, 0, 0], router::PORT)))]
    pub listen: SocketAddr,

    /// Where backend header Secrets are mounted: one directory per Secret,
    /// one file per key.
    #[arg(long, env = env::SECRETS_DIR, default_value = router::SECRETS_DIR)]
    pub secrets_dir: PathBuf,

    /// Sends requests for a backend host to this address instead of
    /// resolving its name, as curl's --resolve (HOST=IP, repeatable or
    /// comma-separated; the URL's port is kept). For a router outside the
    /// cluster, where Service names do not resolve: `make demo` uses it.
    #[arg(long = "resolve", env = "MCP_RESOLVE", value_delimiter = ',', value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Bounds on what one client can make the router do.
#[derive(Args, Clone, Debug)]
pub struct LimitArgs {
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MCP_MAX_REQUEST_BYTES", default_value_t = 1 << 20)]
    pub max_request_bytes: usize,

    /// Largest backend response body read, in bytes; a larger one fails the
    /// call with an error result.
    #[arg(long, env = "MCP_MAX_RESPONSE_BYTES", default_value_t = 4 << 20)]
    pub max_response_bytes: usize,

    /// Requests handled at once; more wait in line (and time out).
    #[arg(long, env = "MCP_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Longest time one HTTP request may take before the router answers 408;
    /// streams (SSE) are exempt.
    #[arg(long, env = "MCP_REQUEST_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Items per page of tools/list, prompts/list and resources/list.
    #[arg(long, env = "MCP_PAGE_SIZE", default_value_t = 100)]
    pub page_size: usize,
}

/// Which requests the HTTP layer accepts.
#[derive(Args, Clone, Debug)]
pub struct HttpArgs {
    /// Accepted Host header values (host or host:port); `*.suffix` matches
    /// any subdomain. Defaults cover in-cluster Service names and localhost.
    #[arg(
        long,
        env = "MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1,*.svc,*.svc.cluster.local"
    )]
    pub allowed_hosts: Vec<String>,

    /// Accepted Origin header values (e.g. https://app.example.com:443); a
    /// request with any other Origin is refused with 403. Empty: browsers'
    /// requests are refused unless the Origin is a localhost one.
    #[arg(long, env = "MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// How long an idle MCP session is kept in Redis.
    #[arg(long, env = "MCP_SESSION_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub session_ttl: Duration,

    /// After SIGTERM, how long the router goes on serving every request
    /// while /readyz answers 503, before it stops: a deleted pod stays an
    /// endpoint of its Service until every proxy has seen it go, and calls
    /// sent to it meanwhile are still answered. A second SIGTERM or Ctrl-C
    /// stops at once. The operator's Deployments set 5s; 0s stops at once.
    #[arg(long, env = env::DRAIN_PERIOD, default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_period: Duration,
}

/// Optional client authentication on /mcp.
#[derive(Args, Clone, Debug, Default)]
pub struct AuthArgs {
    /// File holding the static bearer token clients must send (as a mounted
    /// Secret key).
    #[arg(long, env = "MCP_AUTH_TOKEN_FILE", conflicts_with_all = ["auth_token", "jwt_jwks_file", "jwt_jwks_url"])]
    pub auth_token_file: Option<PathBuf>,

    /// The static bearer token itself.
    #[arg(long, env = "MCP_AUTH_TOKEN", hide_env_values = true, conflicts_with_all = ["jwt_jwks_file", "jwt_jwks_url"])]
    pub auth_token: Option<String>,

    /// JWKS file whose keys verify RS256/ES256 bearer JWTs.
    #[arg(long, env = "MCP_JWT_JWKS_FILE", conflicts_with = "jwt_jwks_url")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// JWKS URL whose keys verify RS256/ES256 bearer JWTs; refetched when a
    /// token names an unknown key id.
    #[arg(long, env = "MCP_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Required `iss` of JWTs.
    #[arg(long, env = "MCP_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of JWTs.
    #[arg(long, env = "MCP_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// How the catalog is kept current.
#[derive(Args, Clone, Debug)]
pub struct SyncArgs {
    /// How often the version key is read as a safety net for lost
    /// invalidations.
    #[arg(long, env = "MCP_RESYNC_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,
}

/// Parses `namespace/name`.
pub fn parse_server(value: &str) -> Result<ServerId, String> {
    match value.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(ServerId {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => Err(format!("expected <namespace>/<name>, got {value:?}")),
    }
}

fn parse_resolve(value: &str) -> Result<(String, IpAddr), String> {
    let (host, address) = value
        .split_once('=')
        .ok_or_else(|| format!("expected HOST=IP, got {value:?}"))?;
    let address = address
        .parse()
        .map_err(|e| format!("{address:?} is not an IP address: {e}"))?;
    if host.is_empty() {
        return Err(format!("expected HOST=IP, got {value:?}"));
    }
    Ok((host.to_owned(), address))
}

#[cfg(test)]
mod tests {
    use super::{parse_resolve, parse_server};

    #[test]
    fn server_is_namespace_slash_name() {
        let server = parse_server("team-a/weather").expect("valid");
        assert_eq!(server.to_string(), "team-a/weather");
        for bad in ["weather", "/weather", "team-a/", "a/b/c", ""] {
            assert!(parse_server(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn resolve_is_host_equals_ip() {
        let (host, ip) = parse_resolve("weather.team-a.svc=127.0.0.2").expect("valid");
        assert_eq!(
            (host.as_str(), ip.to_string().as_str()),
            ("weather.team-a.svc", "127.0.0.2")
        );
        for bad in ["weather.svc", "=127.0.0.1", "weather.svc=localhost", ""] {
            assert!(parse_resolve(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
