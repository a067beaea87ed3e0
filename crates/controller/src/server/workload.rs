//! The objects that run an MCPServer's routers: a ServiceAccount, a
//! Deployment, a Service, an Ingress when asked, and a PodDisruptionBudget
//! when there is more than one replica. Pure: built from the server and the operator's settings, and
//! applied by the server reconciler with server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::acl;
use mcp_operator_catalog::router::{self, env};
use mcp_operator_catalog::signature::PUBLIC_KEYS_ENV;
use mcp_operator_store::env as redis_var;
use serde_json::json;

use crate::identity::{PASSWORD_ANNOTATION, RouterIdentity};
use crate::server::image::ImagePolicy;

/// What the operator passes to every router.
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// The default router image and which others a server may name.
    pub images: ImagePolicy,
    /// Largest catalog published, as JSON: every router holds its catalog
    /// in memory, and Redis keeps it as one value.
    pub max_catalog_bytes: usize,
    /// How routers reach Redis (MCP_REDIS_URL or MCP_REDIS_CLUSTER_URLS),
    /// without credentials: those come from the server's Secret.
    pub redis_env: Vec<EnvVar>,
    /// The public keys routers verify the catalog with: a literal value,
    /// since a public key is no secret.
    pub catalog_public_keys: String,
    /// The collector routers export traces to, if any.
    pub otlp_endpoint: Option<String>,
}

/// Everything applied for one MCPServer.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// The routers' own identity, with no API rights and no token mounted:
    /// routers read only Redis, so a compromised router gets nothing from
    /// the cluster (not even the namespace's default account).
    pub service_account: ServiceAccount,
    pub deployment: Deployment,
    pub service: Service,
    pub ingress: Option<Ingress>,
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
}

/// Labels on every object of a server; the first two select its pods.
pub fn labels(server: &MCPServer) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "mcp-router".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), server.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            "router".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "mcp-operator".to_owned(),
        ),
    ])
}

/// The name of a server's router ServiceAccount.
pub fn service_account_name(server: &MCPServer) -> String {
    format!("{}-router", server.name_any())
}

fn selector_labels(server: &MCPServer) -> BTreeMap<String, String> {
    labels(server)
        .into_iter()
        .filter(|(k, _)| k == "app.kubernetes.io/name" || k == "app.kubernetes.io/instance")
        .collect()
}

/// Builds the workload, its routers running `image` (allowed by
/// [`RouterSettings::images`]). `identity` names the Secret with the
/// routers' Redis credentials. `secrets` are the Secrets the catalog's
/// backend headers read, with the keys they read; only those keys are
/// mounted (optional, so a missing one fails only the calls that need it),
/// under [`router::SECRETS_DIR`].
pub fn build(
    server: &MCPServer,
    owner: &OwnerReference,
    settings: &RouterSettings,
    image: &str,
    identity: &RouterIdentity,
    secrets: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Workload, serde_json::Error> {
    let name = server.name_any();
    let namespace = server.namespace().unwrap_or_default();
    let spec = &server.spec;
    let metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": labels(server),
        "ownerReferences": [owner],
    });
    let selector = selector_labels(server);
    let service_account_name = service_account_name(server);

    let service_account = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": service_account_name,
            "namespace": namespace,
            "labels": labels(server),
            "ownerReferences": [owner],
        },
        "automountServiceAccountToken": false,
    }))?;

    let mut operator_env = vec![
        json!({"name": env::SERVER, "value": format!("{namespace}/{name}")}),
        json!({"name": env::LISTEN, "value": format!("0.0.0.0:{}", router::PORT)}),
        json!({"name": env::SECRETS_DIR, "value": router::SECRETS_DIR}),
        json!({"name": env::LOG_FORMAT, "value": "json"}),
        json!({"name": PUBLIC_KEYS_ENV, "value": settings.catalog_public_keys}),
        json!({"name": env::DRAIN_PERIOD, "value": format!("{}s", router::DRAIN_SECONDS)}),
    ];
    if let Some(endpoint) = &settings.otlp_endpoint {
        operator_env.push(json!({"name": env::OTLP_ENDPOINT, "value": endpoint}));
    }
    operator_env.extend(settings.redis_env.iter().map(|e| json!(e)));
    // Credentials only by reference, never as a literal value.
    let from_secret = |key: &str| json!({"secretKeyRef": {"name": identity.secret, "key": key}});
    operator_env
        .push(json!({"name": redis_var::USERNAME, "valueFrom": from_secret(acl::SECRET_USERNAME)}));
    operator_env
        .push(json!({"name": redis_var::PASSWORD, "valueFrom": from_secret(acl::SECRET_PASSWORD)}));
    let env = router_env(&spec.env, operator_env);

    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})];
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    for (index, (secret, keys)) in secrets.iter().enumerate() {
        let volume = format!("backend-secret-{index}");
        let items: Vec<_> = keys
            .iter()
            .map(|key| json!({"key": key, "path": key}))
            .collect();
        volumes.push(json!({"name": volume, "secret": {"secretName": secret, "optional": true, "items": items}}));
        mounts.push(json!({"name": volume, "mountPath": format!("{}/{secret}", router::SECRETS_DIR), "readOnly": true}));
    }
    let resources = spec.resources.as_ref().map_or_else(
        || json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}),
        |r| json!(r),
    );
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 5});

    let deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                // The password's hash: a new password rolls the routers.
                "metadata": {
                    "labels": labels(server),
                    "annotations": {PASSWORD_ANNOTATION: identity.password_sha256},
                },
                "spec": {
                    "serviceAccountName": service_account_name,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    // The router's drain after SIGTERM, then its calls in
                    // flight (router::TERMINATION_GRACE_SECONDS).
                    "terminationGracePeriodSeconds": router::TERMINATION_GRACE_SECONDS,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": selector},
                    }],
                    "containers": [{
                        "name": "router",
                        "image": image,
                        "args": ["router"],
                        "ports": [{"name": "http", "containerPort": router::PORT, "protocol": "TCP"}],
                        "env": env,
                        "resources": resources,
                        "livenessProbe": probe(router::HEALTH_PATH),
                        "readinessProbe": probe(router::READY_PATH),
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }))?;

    let service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": spec.service.type_,
            "selector": selector,
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }))?;

    let ingress = spec
        .ingress
        .as_ref()
        .map(|ingress| {
            let mut ingress_spec = json!({
                "rules": [{
                    "host": ingress.host,
                    "http": {"paths": [{
                        "path": ingress.path,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": name, "port": {"name": "http"}}},
                    }]},
                }],
            });
            if let Some(class) = &ingress.class_name {
                ingress_spec["ingressClassName"] = json!(class);
            }
            if let Some(secret) = &ingress.tls_secret_name {
                ingress_spec["tls"] = json!([{"hosts": [ingress.host], "secretName": secret}]);
            }
            serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": metadata,
                "spec": ingress_spec,
            }))
        })
        .transpose()?;

    let pod_disruption_budget = (spec.replicas > 1)
        .then(|| {
            serde_json::from_value(json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": metadata,
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
            }))
        })
        .transpose()?;

    Ok(Workload {
        service_account,
        deployment,
        service,
        ingress,
        pod_disruption_budget,
    })
}

/// A router's environment: the server's own variables first, without any
/// `MCP_*` one (the schema refuses them; objects stored before that rule
/// may still have them) and without repeats (server-side apply refuses a
/// list with two entries of one name); the operator's last, so they win.
fn router_env(own: &[EnvVar], operator: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let mut names = BTreeSet::new();
    let mut env: Vec<serde_json::Value> = own
        .iter()
        .filter(|e| !e.name.starts_with(env::PREFIX))
        .filter(|e| {
            let taken_by_operator = operator
                .iter()
                .any(|o| o["name"].as_str() == Some(e.name.as_str()));
            !taken_by_operator && names.insert(e.name.as_str())
        })
        .map(|e| json!(e))
        .collect();
    env.extend(operator);
    env
}

/// The collector URL routers get as a literal env value: an `http` or
/// `https` URL with no user or password in it, since none may travel so.
pub fn otlp_endpoint(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|error| format!("'{value}' is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{value}' is not an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds credentials, which the routers would get as a literal env value; authenticate the collector another way".to_owned(),
        );
    }
    Ok(value.to_owned())
}

/// Where clients reach the server: through its Ingress when it has one,
/// else the Service's cluster DNS name.
pub fn url(server: &MCPServer) -> String {
    match &server.spec.ingress {
        Some(ingress) => {
            let scheme = if ingress.tls_secret_name.is_some() {
                "https"
            } else {
                "http"
            };
            format!(
                "{scheme}://{}{}/mcp",
                ingress.host,
                ingress.path.trim_end_matches('/')
            )
        }
        None => format!(
            "http://{}.{}.svc:{}/mcp",
            server.name_any(),
            server.namespace().unwrap_or_default(),
            server.spec.service.port
        ),
    }
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    fn settings() -> RouterSettings {
        RouterSettings {
            images: ImagePolicy::new("unused:latest".into(), &[]).expect("no patterns"),
            max_catalog_bytes: 1 << 20,
            redis_env: vec![EnvVar {
                name: "MCP_REDIS_URL".into(),
                value: Some("redis://redis:6379".into()),
                value_from: None,
            }],
            catalog_public_keys: "0123456789abcdef:AAAA".into(),
            otlp_endpoint: Some("http://collector.observability:4318".into()),
        }
    }

    fn env_var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    /// A tenant's env cannot point its routers at another server, Redis,
    /// Secrets directory or trace collector, nor repeat a name (which would
    /// fail the apply).
    #[test]
    fn a_servers_env_cannot_set_the_operators_variables() {
        let own = [
            env_var("MCP_SERVER", "team-b/payments"),
            env_var("MCP_REDIS_URL", "redis://attacker:6379"),
            env_var(env::OTLP_ENDPOINT, "http://attacker:4318"),
            env_var("RUST_LOG", "debug"),
            env_var("RUST_LOG", "trace"),
            env_var("TZ", "UTC"),
        ];
        let operator = vec![
            json!({"name": "MCP_SERVER", "value": "team-a/weather"}),
            json!({"name": "MCP_REDIS_URL", "value": "redis://redis:6379"}),
            json!({"name": env::OTLP_ENDPOINT, "value": "http://collector:4318"}),
        ];
        let env = router_env(&own, operator);
        let pairs: Vec<(&str, &str)> = env
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default(),
                    e["value"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("RUST_LOG", "debug"),
                ("TZ", "UTC"),
                ("MCP_SERVER", "team-a/weather"),
                ("MCP_REDIS_URL", "redis://redis:6379"),
                (env::OTLP_ENDPOINT, "http://collector:4318"),
            ]
        );
    }

    #[test]
    fn an_otlp_endpoint_is_a_plain_http_url() {
        assert_eq!(
            otlp_endpoint("http://collector.observability:4318"),
            Ok("http://collector.observability:4318".to_owned())
        );
        assert!(otlp_endpoint("https://otel.example.com").is_ok());
        for (bad, why) in [
            ("http://user:secret@collector:4318", "holds credentials"),
            ("http://token@collector:4318", "holds credentials"),
            ("grpc://collector:4317", "not an http or https URL"),
            ("collector:4318", "not an http or https URL"),
            ("not a url", "is not a URL"),
        ] {
            let error = otlp_endpoint(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    /// Builds the fixture server's workload and compares it with the
    /// committed YAML; `UPDATE_FIXTURES=1 cargo test` rewrites the file.
    #[test]
    fn builds_the_fixture_workload() {
        let server: MCPServer =
            serde_yaml_ng::from_str(include_str!("../../tests/fixtures/server.yaml"))
                .expect("the fixture");
        let owner = server
            .controller_owner_ref(&())
            .expect("the fixture has a uid");
        let settings = settings();
        let secrets = BTreeMap::from([(
            "weather-token".to_owned(),
            BTreeSet::from(["token".to_owned()]),
        )]);
        let image = server.spec.image.as_deref().unwrap_or("unused:latest");
        let identity = RouterIdentity {
            secret: acl::secret_name("weather"),
            password_sha256: acl::password_sha256("fixture"),
        };
        let workload =
            build(&server, &owner, &settings, image, &identity, &secrets).expect("a workload");
        let documents = [
            serde_yaml_ng::to_string(&workload.service_account),
            serde_yaml_ng::to_string(&workload.deployment),
            serde_yaml_ng::to_string(&workload.service),
            serde_yaml_ng::to_string(&workload.ingress),
            serde_yaml_ng::to_string(&workload.pod_disruption_budget),
        ];
        let actual = documents
            .into_iter()
            .map(|d| d.expect("serializable"))
            .collect::<Vec<_>>()
            .join("---\n");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/workload.yaml");
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(path, &actual).expect("write the fixture");
        }
        let expected = std::fs::read_to_string(path).expect("the expected workload");
        assert_eq!(
            actual, expected,
            "run UPDATE_FIXTURES=1 cargo test to accept a change"
        );
        assert_eq!(url(&server), "https://mcp.example.com/mcp");
    }
}
