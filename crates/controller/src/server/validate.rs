//! The first stage of a server reconcile: what in the spec the CRD schema
//! cannot catch, and whether the server may run the router image it asks
//! for. Pure: a server in, a problem or the image out.

use kube::ResourceExt;
use kube::core::Selector;
use mcp_operator_api::MCPServer;

use crate::member::validate::Problem;
use crate::server::image::ImagePolicy;

/// The router image `server` runs, or why it cannot run at all.
pub fn validate(server: &MCPServer, images: &ImagePolicy) -> Result<String, Problem> {
    if let Some(message) = invalid(server) {
        return Err(Problem::new("InvalidSpec", message));
    }
    images.image(server.spec.image.as_deref())
}

/// Spec problems the schema cannot catch, as one sentence.
fn invalid(server: &MCPServer) -> Option<String> {
    let name = server.name_any();
    let dns_label = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if !dns_label {
        return Some(format!(
            "The name '{name}' cannot name its Service: use at most 63 lowercase letters, digits or '-', starting with a letter."
        ));
    }
    let selectors = [
        ("toolSelector", &server.spec.tool_selector),
        ("promptSelector", &server.spec.prompt_selector),
        ("resourceSelector", &server.spec.resource_selector),
    ];
    selectors.into_iter().find_map(|(field, selector)| {
        let error = Selector::try_from(selector.clone()?).err()?;
        Some(format!(
            "spec.{field} is not a valid label selector: {error}."
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_IMAGE: &str = "ghcr.io/kubemcp/mcp-operator:0.1.0";

    /// A server named `name` with `spec` (YAML).
    fn server(name: &str, spec: &str) -> MCPServer {
        let yaml = format!(
            "apiVersion: kubemcp.io/v1alpha1\nkind: MCPServer\nmetadata: {{name: '{name}', namespace: team-a}}\nspec: {spec}\n"
        );
        serde_yaml_ng::from_str(&yaml).expect("a server")
    }

    fn images() -> ImagePolicy {
        ImagePolicy::new(DEFAULT_IMAGE.into(), &[]).expect("a policy")
    }

    #[test]
    fn problems_the_schema_cannot_catch() {
        let service_name = "cannot name its Service";
        let cases = [
            (
                "a name that is a DNS label",
                "weather",
                "{}",
                Ok(DEFAULT_IMAGE),
            ),
            (
                "uppercase",
                "Weather",
                "{}",
                Err(("InvalidSpec", service_name)),
            ),
            (
                "a leading digit",
                "9lives",
                "{}",
                Err(("InvalidSpec", service_name)),
            ),
            (
                "a trailing dash",
                "trailing-",
                "{}",
                Err(("InvalidSpec", service_name)),
            ),
            (
                "64 characters",
                &"a".repeat(64),
                "{}",
                Err(("InvalidSpec", service_name)),
            ),
            (
                "an In without values",
                "weather",
                "{promptSelector: {matchExpressions: [{key: team, operator: In}]}}",
                Err((
                    "InvalidSpec",
                    "spec.promptSelector is not a valid label selector",
                )),
            ),
            (
                "an image outside the policy",
                "weather",
                "{image: evil.example.com/router:1}",
                Err(("ImageNotAllowed", "evil.example.com/router:1")),
            ),
            (
                "the default image named",
                "weather",
                &format!("{{image: '{DEFAULT_IMAGE}'}}"),
                Ok(DEFAULT_IMAGE),
            ),
        ];
        for (case, name, spec, expected) in cases {
            let result = validate(&server(name, spec), &images());
            match (result, expected) {
                (Ok(image), Ok(want)) => assert_eq!(image, want, "{case}"),
                (Err(problem), Err((reason, text))) => {
                    assert_eq!(problem.reason, reason, "{case}");
                    assert!(
                        problem.message.contains(text),
                        "{case}: {}",
                        problem.message
                    );
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }
}
