//! Secret header values, read from the Secret volumes the operator mounts:
//! `<dir>/<secret>/<key>`. Read on every request, so a rotated Secret is
//! picked up without a restart. Values are never logged; errors name only
//! the Secret and key.

use std::path::{Component, Path, PathBuf};

/// The directory the Secrets are mounted under.
#[derive(Clone, Debug)]
pub struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The value of `key` in Secret `name`, without a trailing newline.
    pub async fn read(&self, name: &str, key: &str) -> Result<String, String> {
        let missing = || format!("key '{key}' of Secret '{name}' is not available to the router");
        // Both come from the catalog, but a path must never leave the dir.
        if !is_plain(name) || !is_plain(key) {
            return Err(missing());
        }
        let value = tokio::fs::read_to_string(self.dir.join(name).join(key))
            .await
            .map_err(|_| missing())?;
        Ok(value.trim_end_matches(['\r', '\n']).to_owned())
    }
}

fn is_plain(part: &str) -> bool {
    let mut components = Path::new(part).components();
    matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_mounted_key_and_refuses_paths() {
        let dir = std::env::temp_dir().join(format!("mcp-router-secrets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("token")).expect("create dir");
        std::fs::write(dir.join("token").join("value"), "s3cret\n").expect("write");
        let secrets = Secrets::new(dir.clone());
        assert_eq!(
            secrets.read("token", "value").await.as_deref(),
            Ok("s3cret")
        );
        let error = secrets
            .read("token", "other")
            .await
            .expect_err("missing key");
        assert!(
            error.contains("'other'") && !error.contains("s3cret"),
            "{error}"
        );
        assert!(secrets.read("..", "token").await.is_err());
        assert!(secrets.read("token", "../token/value").await.is_err());
        std::fs::remove_dir_all(dir).expect("clean up");
    }
}
