//! Host and Origin validation against DNS rebinding: a request must name
//! an allowed host, and a browser request (one with an Origin) must come
//! from an allowed origin. Patterns `*.suffix` match any subdomain, so the
//! defaults admit every in-cluster Service name (`*.svc`,
//! `*.svc.cluster.local`) and localhost.

use axum::http::{HeaderMap, StatusCode, header};

/// The allowed hosts and origins.
#[derive(Clone, Debug)]
pub struct Guard {
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Guard {
    pub fn new(hosts: &[String], origins: &[String]) -> Self {
        let normalize = |v: &String| v.trim().trim_end_matches('/').to_ascii_lowercase();
        Self {
            hosts: hosts
                .iter()
                .map(normalize)
                .filter(|h| !h.is_empty())
                .collect(),
            origins: origins
                .iter()
                .map(normalize)
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// `Err` with the status and reason of a refused request.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or((StatusCode::BAD_REQUEST, "host"))?;
        if !self.host_allowed(host) {
            return Err((StatusCode::FORBIDDEN, "host"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin
                .to_str()
                .map_err(|_| (StatusCode::FORBIDDEN, "origin"))?;
            if !self.origin_allowed(origin) {
                return Err((StatusCode::FORBIDDEN, "origin"));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = host_of(&authority);
        self.hosts.iter().any(|allowed| {
            if let Some(suffix) = allowed.strip_prefix("*.") {
                host.strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
            } else {
                *allowed == authority || *allowed == host
            }
        })
    }

    /// An origin is allowed when listed; with no list, when its host is an
    /// allowed host (a page served by the router's own names).
    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.origins.is_empty() {
            return origin
                .split_once("://")
                .is_some_and(|(_, authority)| self.host_allowed(authority));
        }
        self.origins.contains(&origin)
    }
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("valid"));
        if let Some(origin) = origin {
            headers.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("valid"),
            );
        }
        headers
    }

    fn defaults() -> Guard {
        let hosts = [
            "localhost",
            "127.0.0.1",
            "::1",
            "*.svc",
            "*.svc.cluster.local",
        ]
        .map(String::from);
        Guard::new(&hosts, &[])
    }

    #[test]
    fn in_cluster_and_local_hosts_pass() {
        let guard = defaults();
        for host in [
            "localhost:8080",
            "127.0.0.1",
            "[::1]:8080",
            "weather.team-a.svc:8080",
            "weather.team-a.svc.cluster.local",
        ] {
            assert!(guard.check(&headers(host, None)).is_ok(), "{host}");
        }
        for host in [
            "evil.example.com",
            "svc",
            "weather.team-a.svc.evil.com",
            "localhost.evil.com",
        ] {
            assert_eq!(
                guard.check(&headers(host, None)),
                Err((StatusCode::FORBIDDEN, "host")),
                "{host}"
            );
        }
    }

    #[test]
    fn origins_must_be_allowed() {
        let guard = defaults();
        assert!(
            guard
                .check(&headers("localhost:8080", Some("http://localhost:6274")))
                .is_ok()
        );
        assert!(
            guard
                .check(&headers("localhost:8080", Some("https://evil.example.com")))
                .is_err()
        );
        let guard = Guard::new(&["localhost".into()], &["https://app.example.com".into()]);
        assert!(
            guard
                .check(&headers("localhost", Some("https://app.example.com")))
                .is_ok()
        );
        assert!(
            guard
                .check(&headers("localhost", Some("http://localhost:1")))
                .is_err()
        );
    }
}
