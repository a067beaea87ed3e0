//! Optional client authentication on /mcp: a static bearer token (mounted
//! from a Secret) or JWTs signed with RS256/ES256 by a key of a JWKS (file
//! or URL), with issuer and audience checks. Anything else gets 401 with a
//! `WWW-Authenticate` challenge.

use std::path::PathBuf;

use anyhow::Context;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::RwLock;

use crate::args::AuthArgs;

/// How clients must authenticate.
pub enum Auth {
    None,
    Token(String),
    Jwt(Box<Jwt>),
}

/// JWT verification: keys from a JWKS, and the claims checked.
pub struct Jwt {
    source: JwksSource,
    keys: RwLock<JwkSet>,
    issuer: Option<String>,
    audience: Option<String>,
    http: reqwest::Client,
}

enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// Why a request was refused, for the challenge and the log.
#[derive(Debug)]
pub struct Refusal {
    reason: String,
    /// A token was given but is not valid (RFC 6750 `invalid_token`).
    invalid_token: bool,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let challenge = if self.invalid_token {
            format!(
                "Bearer realm=\"mcp\", error=\"invalid_token\", error_description=\"{}\"",
                self.reason.replace(['"', '\\'], "'")
            )
        } else {
            "Bearer realm=\"mcp\"".to_owned()
        };
        let mut response = (StatusCode::UNAUTHORIZED, self.reason).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl Auth {
    /// Reads the token file or the JWKS once at start; a missing file or an
    /// unreachable JWKS URL is a startup error.
    pub async fn from_args(args: &AuthArgs) -> anyhow::Result<Self> {
        if let Some(path) = &args.auth_token_file {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading the bearer token from {}", path.display()))?;
            return Self::token(token.trim().to_owned());
        }
        if let Some(token) = &args.auth_token {
            return Self::token(token.trim().to_owned());
        }
        let source = match (&args.jwt_jwks_file, &args.jwt_jwks_url) {
            (Some(path), _) => JwksSource::File(path.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            (None, None) => return Ok(Self::None),
        };
        let jwt = Jwt {
            source,
            keys: RwLock::new(JwkSet { keys: vec![] }),
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            http: crate::forward::client_builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
        };
        jwt.refresh().await?;
        Ok(Self::Jwt(Box::new(jwt)))
    }

    fn token(token: String) -> anyhow::Result<Self> {
        anyhow::ensure!(!token.is_empty(), "the bearer token is empty");
        Ok(Self::Token(token))
    }

    /// Admits or refuses a request by its headers.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let bearer = || {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or(Refusal {
                    reason: "a bearer token is required".into(),
                    invalid_token: false,
                })
        };
        match self {
            Self::None => Ok(()),
            Self::Token(expected) => {
                if constant_time_eq(bearer()?.as_bytes(), expected.as_bytes()) {
                    Ok(())
                } else {
                    Err(Refusal {
                        reason: "the bearer token is not valid".into(),
                        invalid_token: true,
                    })
                }
            }
            Self::Jwt(jwt) => jwt.verify(bearer()?).await.map_err(|reason| Refusal {
                reason,
                invalid_token: true,
            }),
        }
    }
}

/// Equal-length comparison whose time does not depend on where the inputs
/// differ, so the token cannot be guessed byte by byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Jwt {
    async fn refresh(&self) -> anyhow::Result<()> {
        let json = match &self.source {
            JwksSource::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWKS from {}", path.display()))?,
            JwksSource::Url(url) => {
                self.http
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .with_context(|| format!("fetching the JWKS from {url}"))?
                    .text()
                    .await?
            }
        };
        let set: JwkSet = serde_json::from_str(&json).context("parsing the JWKS")?;
        *self.keys.write().await = set;
        Ok(())
    }

    async fn verify(&self, token: &str) -> Result<(), String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(format!(
                "JWT algorithm {:?} is not accepted (RS256, ES256)",
                header.alg
            ));
        }
        let key = match self.key(header.kid.as_deref()).await {
            Some(key) => key,
            // An unknown key id may be a rotated key: refetch once.
            None => {
                self.refresh().await.map_err(|e| format!("{e:#}"))?;
                self.key(header.kid.as_deref())
                    .await
                    .ok_or_else(|| "no JWKS key matches the JWT".to_owned())?
            }
        };
        let mut validation = Validation::new(header.alg);
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => {
                validation.required_spec_claims.remove("iss");
            }
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map(drop)
            .map_err(|e| format!("JWT rejected: {e}"))
    }

    async fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        let jwk = match kid {
            Some(kid) => keys.find(kid)?,
            None => keys.keys.first()?,
        };
        DecodingKey::from_jwk(jwk).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_token_needs_the_exact_bearer() {
        let auth = Auth::Token("s3cret".into());
        let mut headers = HeaderMap::new();
        let refusal = auth.check(&headers).await.expect_err("no token");
        assert!(!refusal.invalid_token);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        let response = auth
            .check(&headers)
            .await
            .expect_err("wrong token")
            .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        assert!(challenge.contains("invalid_token"), "{challenge}");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        auth.check(&headers).await.expect("the right token");
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[tokio::test]
    async fn jwts_are_verified_against_the_jwks() {
        use jsonwebtoken::{EncodingKey, Header};
        use serde_json::json;

        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let args = AuthArgs {
            jwt_jwks_file: Some(fixtures.join("jwks.json")),
            jwt_issuer: Some("https://issuer.example".into()),
            jwt_audience: Some("mcp-router".into()),
            ..AuthArgs::default()
        };
        let auth = Auth::from_args(&args).await.expect("the JWKS loads");
        let sign = |alg: Algorithm, kid: &str, pem: &str, claims: serde_json::Value| {
            let pem = std::fs::read(fixtures.join(pem)).expect("a fixture key");
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
                _ => EncodingKey::from_ec_pem(&pem),
            }
            .expect("a signing key");
            let mut header = Header::new(alg);
            header.kid = Some(kid.into());
            jsonwebtoken::encode(&header, &claims, &key).expect("a signed token")
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let claims = |iss: &str, aud: &str, exp: u64| json!({"iss": iss, "aud": aud, "exp": exp, "sub": "tester"});
        let good = claims("https://issuer.example", "mcp-router", now + 300);

        for (alg, kid, pem) in [
            (Algorithm::ES256, "es", "jwt-es256.pem"),
            (Algorithm::RS256, "rs", "jwt-rs256.pem"),
        ] {
            let token = sign(alg, kid, pem, good.clone());
            auth.check(&bearer(&token))
                .await
                .expect("a valid token of a JWKS key");
        }
        let refused = [
            (
                "wrong audience",
                sign(
                    Algorithm::ES256,
                    "es",
                    "jwt-es256.pem",
                    claims("https://issuer.example", "other", now + 300),
                ),
            ),
            (
                "wrong issuer",
                sign(
                    Algorithm::ES256,
                    "es",
                    "jwt-es256.pem",
                    claims("https://evil.example", "mcp-router", now + 300),
                ),
            ),
            (
                "expired",
                sign(
                    Algorithm::ES256,
                    "es",
                    "jwt-es256.pem",
                    claims("https://issuer.example", "mcp-router", now - 3600),
                ),
            ),
            (
                "untrusted key",
                sign(Algorithm::ES256, "es", "jwt-untrusted.pem", good.clone()),
            ),
            (
                "unknown key id",
                sign(Algorithm::ES256, "nope", "jwt-es256.pem", good.clone()),
            ),
            ("not a JWT", "abc.def".to_owned()),
        ];
        for (what, token) in refused {
            let refusal = auth.check(&bearer(&token)).await.expect_err(what);
            assert!(refusal.invalid_token, "{what}: {refusal:?}");
        }
    }
}
