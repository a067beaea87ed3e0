//! The reference proxy: Debian's nginx in front of the same backend, with
//! its own prefix and config in the harness' scratch directory (never the
//! system's nginx service), stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

pub struct Nginx {
    child: Child,
    prefix: PathBuf,
    pub port: u16,
}

/// Two workers, one per core; upstream connections kept alive, as any
/// production proxy config would.
fn config(prefix: &Path, port: u16, backend: SocketAddr) -> String {
    let prefix = prefix.display();
    format!(
        "daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream backend {{
        server {backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

impl Nginx {
    /// Starts nginx in `prefix` (created), proxying to `backend`; returns
    /// once it answers `probe`, a URL path.
    pub async fn start(
        prefix: PathBuf,
        backend: SocketAddr,
        http: &reqwest::Client,
        probe: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&prefix)?;
        let port = mcp_operator_chaos::free_port()?;
        std::fs::write(prefix.join("nginx.conf"), config(&prefix, port, backend))?;
        let child = Command::new("nginx")
            .args(nginx_args(&prefix))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx (loadtest/router/install.sh installs it)")?;
        let mut nginx = Nginx {
            child,
            prefix,
            port,
        };
        nginx.wait_ready(http, probe).await?;
        Ok(nginx)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client, probe: &str) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}{probe}", self.port);
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("nginx exited ({status}): {}", self.error_log());
            }
            if http.post(&url).body("{}").send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("nginx did not answer within 10 s: {}", self.error_log())
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }
}

/// nginx's arguments for the config in `prefix`; the `-e` log keeps it
/// from opening the system's log before it has read the config.
fn nginx_args(prefix: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "-p".into(),
        prefix.into(),
        "-c".into(),
        prefix.join("nginx.conf").into(),
        "-e".into(),
        prefix.join("error.log").into(),
    ]
}

impl Drop for Nginx {
    /// `nginx -s stop` ends the workers too; killing only the master would
    /// leave them serving.
    fn drop(&mut self) {
        let stopped = Command::new("nginx")
            .args(nginx_args(&self.prefix))
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
