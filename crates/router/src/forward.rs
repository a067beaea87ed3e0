//! Sending tool calls and resource reads to backends: one pooled
//! keep-alive HTTP client, a timeout per attempt, retries only where a
//! repeat is safe, and a cap on the response size.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcp_operator_api::HttpMethod;
use mcp_operator_catalog::{Endpoint, HeaderValue};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::metrics;
use crate::secrets::Secrets;
use crate::trace;

/// A backend's answer, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The HTTP client shared by all calls.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    secrets: Secrets,
    max_response_bytes: usize,
}

/// Why an attempt failed; `retryable` ones are retried when safe.
struct Failure {
    message: String,
    kind: &'static str,
    retryable: bool,
}

/// A reqwest client builder with the process's TLS provider installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    mcp_operator_store::install_tls_provider();
    reqwest::Client::builder()
}

impl Forwarder {
    /// `resolve` pins backend host names to addresses (`--resolve`).
    pub fn new(
        secrets: Secrets,
        max_response_bytes: usize,
        resolve: &[(String, IpAddr)],
    ) -> Result<Self, reqwest::Error> {
        let pinned = resolve
            .iter()
            .fold(client_builder(), |builder, (host, ip)| {
                // reqwest keeps the URL's port; the one given here is ignored.
                builder.resolve(host, SocketAddr::new(*ip, 0))
            });
        let client = pinned
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            secrets,
            max_response_bytes,
        })
    }

    /// Sends `arguments` (the JSON body, or the query string for GET and
    /// DELETE) with the endpoint's headers; retries up to the endpoint's
    /// `retries` after connection errors and 502/503/504 when `retry_safe`.
    /// `target` names the tool or resource in metrics.
    pub async fn send(
        &self,
        target: &str,
        endpoint: &Endpoint,
        method: HttpMethod,
        arguments: &Map<String, Value>,
        retry_safe: bool,
    ) -> Result<Reply, String> {
        let headers = self.headers(endpoint).await?;
        let attempts = if retry_safe { endpoint.retries + 1 } else { 1 };
        let timeout = Duration::from_secs(u64::from(endpoint.timeout_seconds.max(1)));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let span =
                tracing::info_span!("backend", otel.kind = "client", url = %endpoint.url, attempt);
            let result = tokio::time::timeout(
                timeout,
                self.attempt(endpoint, method, arguments, &headers)
                    .instrument(span),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Failure {
                    message: format!("the backend did not answer within {}s", timeout.as_secs()),
                    kind: "timeout",
                    retryable: false,
                })
            });
            match result {
                Ok(reply) => {
                    metrics::backend(target, "ok", started.elapsed());
                    return Ok(reply);
                }
                Err(failure) => {
                    metrics::backend(target, failure.kind, started.elapsed());
                    if !failure.retryable || attempt >= attempts {
                        let tries = if attempt > 1 {
                            format!(" (after {attempt} attempts)")
                        } else {
                            String::new()
                        };
                        return Err(format!("{}{tries}", failure.message));
                    }
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
            }
        }
    }

    async fn headers(&self, endpoint: &Endpoint) -> Result<Vec<(String, String)>, String> {
        let mut headers = Vec::with_capacity(endpoint.headers.len());
        for header in &endpoint.headers {
            let value = match &header.value {
                HeaderValue::Value(value) => value.clone(),
                HeaderValue::Secret { name, key } => self
                    .secrets
                    .read(name, key)
                    .await
                    .map_err(|e| format!("header {}: {e}", header.name))?,
            };
            headers.push((header.name.clone(), value));
        }
        Ok(headers)
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        method: HttpMethod,
        arguments: &Map<String, Value>,
        headers: &[(String, String)],
    ) -> Result<Reply, Failure> {
        let request = match method {
            HttpMethod::Get => self.client.get(&endpoint.url),
            HttpMethod::Delete => self.client.delete(&endpoint.url),
            HttpMethod::Post => self.client.post(&endpoint.url),
            HttpMethod::Put => self.client.put(&endpoint.url),
            HttpMethod::Patch => self.client.patch(&endpoint.url),
        };
        let request = if matches!(method, HttpMethod::Get | HttpMethod::Delete) {
            request.query(&query(arguments))
        } else {
            request.json(arguments)
        };
        let request = headers
            .iter()
            .fold(request, |request, (name, value)| {
                request.header(name, value)
            })
            // After the endpoint's headers: the trace is the router's to say.
            .headers(trace::outgoing_headers());
        let mut response = request.send().await.map_err(|error| Failure {
            message: format!("cannot reach the backend: {}", cause(&error)),
            kind: "connect",
            retryable: true,
        })?;
        let status = response.status();
        if matches!(status.as_u16(), 502..=504) {
            return Err(Failure {
                message: format!("the backend answered {status}"),
                kind: "status",
                retryable: true,
            });
        }
        let too_large = || Failure {
            message: format!(
                "the backend's response is larger than the {} bytes allowed",
                self.max_response_bytes
            ),
            kind: "too_large",
            retryable: false,
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.max_response_bytes as u64)
        {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| Failure {
            message: format!("the backend's response broke off: {}", cause(&error)),
            kind: "body",
            retryable: false,
        })? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            content_type,
            body: body.freeze(),
        })
    }
}

/// Top-level arguments as query parameters: strings as they are, other
/// values as JSON.
fn query(arguments: &Map<String, Value>) -> Vec<(&str, String)> {
    arguments
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.as_str(), value)
        })
        .collect()
}

/// The innermost error message: reqwest's outer ones only say "error
/// sending request".
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_keeps_strings_and_encodes_the_rest() {
        let arguments = json!({"city": "Oslo", "days": 3, "tags": ["a"]});
        let arguments = arguments.as_object().expect("an object");
        let pairs = query(arguments);
        assert!(pairs.contains(&("city", "Oslo".to_owned())));
        assert!(pairs.contains(&("days", "3".to_owned())));
        assert!(pairs.contains(&("tags", "[\"a\"]".to_owned())));
    }
}
