//! Which router images an MCPServer may ask for. The image receives the
//! server's Redis credential and its backend Secrets, so a tenant may not
//! pick one the platform team has not allowed.

use crate::member::validate::Problem;

/// The operator's default router image and the patterns other images must
/// match (`--allowed-router-images`).
#[derive(Clone, Debug)]
pub struct ImagePolicy {
    default: String,
    allowed: Vec<glob::Pattern>,
}

impl ImagePolicy {
    /// `allowed` are glob patterns (`*` matches across `/` and `:`); the
    /// default image is always allowed.
    pub fn new(default: String, allowed: &[String]) -> Result<Self, glob::PatternError> {
        let allowed = allowed
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| glob::Pattern::new(p.trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self { default, allowed })
    }

    /// The image a server's routers run, or why the one it names is refused.
    pub fn image(&self, requested: Option<&str>) -> Result<String, Problem> {
        let Some(image) = requested else {
            return Ok(self.default.clone());
        };
        if image == self.default || self.allowed.iter().any(|p| p.matches(image)) {
            return Ok(image.to_owned());
        }
        Err(Problem::new(
            "ImageNotAllowed",
            format!(
                "spec.image '{image}' does not match the operator's --allowed-router-images; remove it to run the default router image."
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "ghcr.io/kubemcp/mcp-operator:0.1.0";

    fn policy(allowed: &[&str]) -> ImagePolicy {
        let allowed: Vec<String> = allowed.iter().map(|p| (*p).to_owned()).collect();
        ImagePolicy::new(DEFAULT.to_owned(), &allowed).expect("valid patterns")
    }

    #[test]
    fn the_default_image_is_used_and_always_allowed() {
        let policy = policy(&[]);
        assert_eq!(policy.image(None).as_deref(), Ok(DEFAULT));
        assert_eq!(policy.image(Some(DEFAULT)).as_deref(), Ok(DEFAULT));
    }

    #[test]
    fn other_images_must_match_a_pattern() {
        let policy = policy(&[
            "registry.corp/mcp/*",
            " ",
            "ghcr.io/kubemcp/mcp-operator@sha256:*",
        ]);
        for allowed in [
            "registry.corp/mcp/router:1.2",
            "registry.corp/mcp/team/router:1",
            "ghcr.io/kubemcp/mcp-operator@sha256:abcd",
        ] {
            assert_eq!(policy.image(Some(allowed)).as_deref(), Ok(allowed));
        }
        // What a tenant might try: a look-alike registry, a prefix, an
        // empty or relative name, another tag of the default.
        for refused in [
            "registry.corp.evil.io/mcp/router:1",
            "evil.io/registry.corp/mcp/router",
            "registry.corp/mcpx/router",
            "",
            "router",
            "ghcr.io/kubemcp/mcp-operator:latest",
        ] {
            let problem = policy.image(Some(refused)).expect_err(refused);
            assert_eq!(problem.reason, "ImageNotAllowed", "{refused}");
            assert!(problem.message.contains(refused), "{}", problem.message);
        }
    }

    #[test]
    fn a_bad_pattern_is_an_error() {
        let allowed = ["registry.corp/[".to_owned()];
        assert!(ImagePolicy::new(DEFAULT.to_owned(), &allowed).is_err());
    }
}
