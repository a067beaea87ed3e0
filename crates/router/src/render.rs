//! prompts/get: a prompt's message templates rendered with the client's
//! arguments.

use std::sync::LazyLock;

use mcp_operator_api::Role;
use mcp_operator_catalog::Prompt;
use serde_json::{Map, Value, json};

/// One environment for every render: templates are small and rendered from
/// strings, so nothing is cached per template.
static TEMPLATES: LazyLock<minijinja::Environment<'static>> =
    LazyLock::new(minijinja::Environment::new);

/// Why a prompt could not be rendered.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The client left out a required argument (JSON-RPC -32602).
    MissingArgument(String),
    /// A template failed at render time (e.g. a filter on a wrong type).
    Template { message: usize, error: String },
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingArgument(name) => write!(f, "missing required argument '{name}'"),
            Self::Template { message, error } => {
                write!(
                    f,
                    "message {message} of the prompt cannot be rendered: {error}"
                )
            }
        }
    }
}

/// The GetPromptResult of `prompt` for `arguments`, as JSON.
pub fn render(
    prompt: &Prompt,
    arguments: Option<&Map<String, Value>>,
) -> Result<Value, RenderError> {
    let empty = Map::new();
    let arguments = arguments.unwrap_or(&empty);
    if let Some(missing) = prompt
        .arguments
        .iter()
        .find(|a| a.required && arguments.get(&a.name).is_none_or(Value::is_null))
    {
        return Err(RenderError::MissingArgument(missing.name.clone()));
    }
    let messages = prompt
        .messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let text = TEMPLATES
                .render_str(&message.content, minijinja::value::Serde(arguments))
                .map_err(|error| RenderError::Template {
                    message: index,
                    error: error.to_string(),
                })?;
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            Ok(json!({"role": role, "content": {"type": "text", "text": text}}))
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    let mut result = json!({"messages": messages});
    if let Some(description) = &prompt.description {
        result["description"] = json!(description);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_operator_api::{PromptArgument, PromptMessage};
    use mcp_operator_catalog::Source;

    fn prompt() -> Prompt {
        Prompt {
            name: "greet".into(),
            title: None,
            description: Some("Greets".into()),
            arguments: vec![
                PromptArgument {
                    name: "who".into(),
                    description: None,
                    required: true,
                },
                PromptArgument {
                    name: "tone".into(),
                    description: None,
                    required: false,
                },
            ],
            messages: vec![PromptMessage {
                role: Role::User,
                content: "Say hello to {{ who }}{% if tone %} in a {{ tone }} tone{% endif %}."
                    .into(),
            }],
            source: Source {
                kind: "MCPPrompt".into(),
                name: "greet".into(),
            },
        }
    }

    #[test]
    fn renders_with_and_without_optional_arguments() {
        let args = json!({"who": "Ada", "tone": "warm"});
        let result = render(&prompt(), args.as_object()).expect("renders");
        assert_eq!(
            result["messages"][0]["content"]["text"],
            "Say hello to Ada in a warm tone."
        );
        assert_eq!(result["messages"][0]["role"], "user");
        let args = json!({"who": "Ada"});
        let result = render(&prompt(), args.as_object()).expect("renders");
        assert_eq!(
            result["messages"][0]["content"]["text"],
            "Say hello to Ada."
        );
    }

    #[test]
    fn missing_required_argument_is_named() {
        assert_eq!(
            render(&prompt(), None),
            Err(RenderError::MissingArgument("who".into()))
        );
    }
}
