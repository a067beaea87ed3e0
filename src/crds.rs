//! The `crds` subcommand: the generated CRDs as YAML, the source of
//! `manifests/base/crds/`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Prints every CRD as one YAML stream, or writes one file per CRD plus the
/// kustomization that lists them.
pub fn run(out_dir: Option<&Path>) -> anyhow::Result<()> {
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
