//! Resolving a backend to a URL: the Service must exist in the member's
//! namespace, be one whose traffic stays in the cluster (not ExternalName),
//! and expose the port, by number or by name.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_operator_api::Backend;

use crate::member::validate::Problem;

/// `http://<service>.<namespace>.svc:<port><path>`, or why not.
pub fn resolve(
    backend: &Backend,
    namespace: &str,
    service: Option<&Service>,
) -> Result<String, Problem> {
    let name = &backend.service.name;
    let Some(service) = service else {
        return Err(Problem::new(
            "ServiceNotFound",
            format!("Service '{name}' does not exist in namespace '{namespace}'."),
        ));
    };
    // An ExternalName Service is a DNS alias to any host, in or out of the
    // cluster: the router would send the namespace's Secret headers there.
    if service.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("ExternalName") {
        return Err(Problem::new(
            "ExternalNameService",
            format!(
                "Service '{name}' is of type ExternalName, an alias to another host; a backend must be a Service whose pods run in namespace '{namespace}'."
            ),
        ));
    }
    let ports = service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default();
    let port = ports.iter().find(|p| match &backend.service.port {
        IntOrString::Int(number) => p.port == *number,
        IntOrString::String(port_name) => p.name.as_deref() == Some(port_name.as_str()),
    });
    match port {
        Some(port) => Ok(format!(
            "http://{name}.{namespace}.svc:{}{}",
            port.port, backend.path
        )),
        None => {
            let wanted = match &backend.service.port {
                IntOrString::Int(number) => number.to_string(),
                IntOrString::String(port_name) => format!("named '{port_name}'"),
            };
            let exposed: Vec<String> = ports
                .iter()
                .map(|p| match &p.name {
                    Some(port_name) => format!("{} ({port_name})", p.port),
                    None => p.port.to_string(),
                })
                .collect();
            let exposed = if exposed.is_empty() {
                "none".to_owned()
            } else {
                exposed.join(", ")
            };
            Err(Problem::new(
                "PortNotFound",
                format!("Service '{name}' has no port {wanted}; it exposes {exposed}."),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(port: IntOrString) -> Backend {
        serde_json::from_value(serde_json::json!({
            "service": {"name": "weather", "port": port},
            "path": "/forecast",
        }))
        .expect("a backend")
    }

    fn service() -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "weather", "namespace": "team-a"},
            "spec": {"ports": [{"name": "http", "port": 8080}, {"port": 9090}]},
        }))
        .expect("a service")
    }

    #[test]
    fn resolves_a_port_by_number_and_by_name() {
        let url = "http://weather.team-a.svc:8080/forecast";
        let by_number = resolve(&backend(IntOrString::Int(8080)), "team-a", Some(&service()));
        let by_name = resolve(
            &backend(IntOrString::String("http".into())),
            "team-a",
            Some(&service()),
        );
        assert_eq!(by_number.as_deref(), Ok(url));
        assert_eq!(by_name.as_deref(), Ok(url));
    }

    #[test]
    fn explains_a_missing_service_or_port() {
        let missing =
            resolve(&backend(IntOrString::Int(8080)), "team-a", None).expect_err("no service");
        assert_eq!(missing.reason, "ServiceNotFound");
        let port = resolve(&backend(IntOrString::Int(1)), "team-a", Some(&service()))
            .expect_err("no port");
        assert_eq!(
            port.message,
            "Service 'weather' has no port 1; it exposes 8080 (http), 9090."
        );
    }

    #[test]
    fn refuses_an_external_name_service() {
        let mut alias = service();
        let spec = alias.spec.get_or_insert_default();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("weather.team-b.svc.cluster.local".into());
        let refused = resolve(&backend(IntOrString::Int(8080)), "team-a", Some(&alias))
            .expect_err("an alias");
        assert_eq!(refused.reason, "ExternalNameService");
        assert!(refused.message.contains("'team-a'"), "{}", refused.message);
    }
}
