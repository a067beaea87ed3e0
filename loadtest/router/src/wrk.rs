//! The load generator: Debian's `wrk`, a process of its own, so that the
//! client's cost is not inside the harness' runtime (which runs the
//! backend). A Lua script written per target sets the POST, gives every
//! JSON-RPC request its own id, checks every response and prints the
//! results as one JSON line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// One HTTP request, sent over and over.
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    /// Found in every good answer's body.
    pub expect: &'static str,
}

/// A JSON-RPC id the Lua script replaces with a fresh one per request:
/// requests in flight at once on one MCP session must not share an id.
const ID_PLACEHOLDER: u64 = 987_654_321_987;

impl Request {
    /// A JSON-RPC request: `body` with an `id` of its own per request.
    pub fn json_rpc(
        url: String,
        headers: Vec<(&'static str, String)>,
        mut body: Value,
        expect: &'static str,
    ) -> Self {
        body["id"] = ID_PLACEHOLDER.into();
        Request {
            url,
            headers,
            body,
            expect,
        }
    }

    /// The body with the placeholder id, for a single request.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }

    /// The Lua script that makes wrk send this request.
    pub fn script(&self) -> anyhow::Result<String> {
        let body = self.body_text();
        let (prefix, suffix) = match body.split_once(&ID_PLACEHOLDER.to_string()) {
            Some((prefix, suffix)) => (prefix.to_owned(), Some(suffix.to_owned())),
            None => (body, None),
        };
        let mut headers = String::new();
        for (name, value) in &self.headers {
            // A space after `[`: `[[` would open a Lua long string.
            headers.push_str(&format!(
                "wrk.headers[ {} ] = {}\n",
                lua(name)?,
                lua(value)?
            ));
        }
        let suffix = match suffix {
            Some(suffix) => lua(&suffix)?,
            None => "nil".to_owned(),
        };
        Ok(include_str!("wrk.lua")
            .replace("--[[headers]]", &headers)
            .replace("--[[prefix]]", &lua(&prefix)?)
            .replace("--[[suffix]]", &suffix)
            .replace("--[[expect]]", &lua(self.expect)?))
    }
}

/// A Lua long string holding `text` verbatim.
fn lua(text: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!text.contains("]==]"), "cannot quote {text:?} for Lua");
    Ok(format!("[==[{text}]==]"))
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// The line of wrk's output the script's `done()` writes.
const RESULT: &str = "router-bench-result ";
/// The line with the first bad answer, when there was one.
const UNEXPECTED: &str = "router-bench-unexpected ";

/// wrk threads for `connections`: one per 32 connections, at most one per
/// core of the 2-core machine.
fn threads(connections: usize) -> usize {
    connections.div_ceil(32).clamp(1, 2)
}

/// Runs wrk with `script` against `url` for `duration`. Fails on any
/// socket error, timeout, non-2xx status or unexpected body.
pub async fn run(
    script: PathBuf,
    url: String,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Sample> {
    anyhow::ensure!(
        duration.as_secs() >= 1,
        "wrk measures whole seconds, not {duration:?}"
    );
    let mut wrk = Command::new("wrk");
    wrk.arg("--threads")
        .arg(threads(connections).to_string())
        .arg("--connections")
        .arg(connections.to_string())
        .arg("--duration")
        .arg(format!("{}s", duration.as_secs()))
        .args(["--timeout", "5s", "--latency", "--script"])
        .arg(&script)
        .arg(&url);
    let output = tokio::task::spawn_blocking(move || wrk.output())
        .await?
        .context("running wrk (loadtest/router/install.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk against {url} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        stdout
    );
    parse(&stdout).with_context(|| format!("wrk against {url}, script {}", script.display()))
}

fn parse(stdout: &str) -> anyhow::Result<Sample> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .with_context(|| format!("no result line in wrk's output:\n{stdout}"))?;
    let result: Value = serde_json::from_str(line).context("wrk's result line")?;
    let number = |key: &str| -> anyhow::Result<f64> {
        result[key]
            .as_f64()
            .with_context(|| format!("no {key} in wrk's result {line}"))
    };
    let errors = result["errors"]
        .as_object()
        .with_context(|| format!("no errors in wrk's result {line}"))?;
    let failed: f64 = errors.values().filter_map(Value::as_f64).sum();
    anyhow::ensure!(failed == 0.0, "wrk saw errors: {line}\n{stdout}");
    let unexpected = number("unexpected")?;
    if unexpected > 0.0 {
        let first = stdout
            .lines()
            .find_map(|l| l.strip_prefix(UNEXPECTED))
            .unwrap_or("?");
        anyhow::bail!("{unexpected} bad answers (non-2xx or unexpected body), the first: {first}");
    }
    let requests = number("requests")?;
    anyhow::ensure!(requests > 0.0, "wrk sent no request: {line}");
    let micros =
        |key: &str| -> anyhow::Result<Duration> { Ok(Duration::from_secs_f64(number(key)? / 1e6)) };
    Ok(Sample {
        rate: requests / (number("duration_us")? / 1e6),
        p50: micros("p50_us")?,
        p99: micros("p99_us")?,
    })
}

/// Writes `request`'s script into `dir` as `name.lua`.
pub fn write_script(dir: &Path, name: &str, request: &Request) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, request.script()?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_parsed() -> anyhow::Result<()> {
        let out = "Running 1s test\n  Latency Distribution\n\
                   router-bench-result {\"requests\":2000,\"duration_us\":2000000,\"unexpected\":0,\
                   \"p50_us\":1500,\"p99_us\":9000,\"errors\":{\"connect\":0,\"read\":0,\"write\":0,\"status\":0,\"timeout\":0}}\n";
        let sample = parse(out)?;
        assert_eq!(sample.rate, 1000.0);
        assert_eq!(sample.p50, Duration::from_micros(1500));
        assert_eq!(sample.p99, Duration::from_micros(9000));
        Ok(())
    }

    #[test]
    fn errors_and_bad_answers_fail_the_run() {
        let result = |errors: &str, unexpected: u32| {
            format!(
                "router-bench-result {{\"requests\":10,\"duration_us\":1000000,\"unexpected\":{unexpected},\
                 \"p50_us\":1,\"p99_us\":2,\"errors\":{errors}}}\n\
                 router-bench-unexpected 500 oops\n"
            )
        };
        let clean = r#"{"connect":0,"read":0,"write":0,"status":0,"timeout":0}"#;
        let status = r#"{"connect":0,"read":0,"write":0,"status":3,"timeout":0}"#;
        assert!(parse(&result(clean, 0)).is_ok());
        assert!(parse(&result(status, 0)).is_err());
        let bad = parse(&result(clean, 2)).expect_err("bad answers");
        assert!(bad.to_string().contains("500 oops"), "{bad}");
        assert!(parse("Running 1s test\n").is_err());
    }

    #[test]
    fn json_rpc_ids_are_split_out_of_the_body() -> anyhow::Result<()> {
        let request = Request::json_rpc(
            "http://127.0.0.1:1/mcp".into(),
            vec![("mcp-session-id", "abc".into())],
            json!({"jsonrpc": "2.0", "method": "tools/call"}),
            "\"isError\":false",
        );
        let script = request.script()?;
        assert!(!script.contains(&ID_PLACEHOLDER.to_string()), "{script}");
        assert!(script.contains("local suffix = [==["), "{script}");
        assert!(script.contains("wrk.headers[ [==[mcp-session-id]==] ] = [==[abc]==]"));
        let constant = Request {
            url: "http://127.0.0.1:1/echo".into(),
            headers: vec![],
            body: json!({"message": "hello"}),
            expect: "echo",
        };
        assert!(constant.script()?.contains("local suffix = nil"));
        Ok(())
    }

    #[test]
    fn one_thread_per_32_connections_at_most_two() {
        assert_eq!(threads(16), 1);
        assert_eq!(threads(64), 2);
        assert_eq!(threads(256), 2);
    }
}
