//! The `crds` subcommand: the generated CRDs as YAML, the source of
//! `manifests/base/crds/`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Prints every CRD as one YAML stream or as a Markdown reference, or writes
/// one YAML file per CRD.
pub fn run(out_dir: Option<&Path>, reference: bool) -> anyhow::Result<()> {
    if reference {
        let markdown = mcp_operator_api::reference::markdown(&mcp_operator_api::crds());
        return std::io::stdout()
            .lock()
            .write_all(markdown.as_bytes())
            .context("writing to stdout");
    }
    let files = mcp_operator_api::crd_manifests().context("rendering CRDs as YAML")?;
    match out_dir {
        None => {
            let mut stdout = std::io::stdout().lock();
            for (_, yaml) in &files {
                write!(stdout, "---\n{yaml}").context("writing to stdout")?;
            }
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in &files {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
