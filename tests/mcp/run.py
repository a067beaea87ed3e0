"""Real MCP clients against the real router, for `make test-mcp`: the
Python SDK (single-node Redis and the cluster, both protocol eras) and the
official conformance suite's server scenarios (baseline in
conformance-baseline.yml). Prints `N passed, N failed` and exits non-zero
on any failure."""

import argparse
import os
import socket
import subprocess
import sys
import time
import traceback
import urllib.request

import anyio

import fixture
import sdk

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Router:
    """A running `mcp-operator router`, stopped on exit."""

    def __init__(self, binary, server, redis_kind, redis_urls):
        self.port = free_port()
        env = dict(os.environ)
        env.pop("MCP_REDIS_URL", None)
        env.pop("MCP_REDIS_CLUSTER_URLS", None)
        env["MCP_SERVER"] = server
        env["MCP_LISTEN"] = f"127.0.0.1:{self.port}"
        env["MCP_REDIS_URL" if redis_kind == "single" else "MCP_REDIS_CLUSTER_URLS"] = redis_urls
        env["MCP_CATALOG_PUBLIC_KEYS"] = fixture.SIGNER.public_keys
        env["MCP_RESOLVE"] = f"{fixture.BACKEND_HOST}=127.0.0.1"
        env.setdefault("RUST_LOG", "warn")
        self.process = subprocess.Popen([binary, "router"], env=env)

    def url(self, host="127.0.0.1"):
        return f"http://{host}:{self.port}/mcp"

    def __enter__(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the router on port {self.port} was not ready within 30s")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    redis = {
        "single": os.environ.get("MCP_REDIS_URL"),
        "cluster": os.environ.get("MCP_REDIS_CLUSTER_URLS"),
    }
    if not all(redis.values()):
        sys.exit("MCP_REDIS_URL and MCP_REDIS_CLUSTER_URLS are not set: run `make test-mcp`")
    backend = fixture.start_backend()
    passed, failed = 0, 0

    for kind, urls in redis.items():
        for mode in ("legacy", "auto"):
            name = f"sdk-{kind}-{mode}-{os.getpid()}"
            client = fixture.redis_client(kind, urls)
            fixture.publish(client, fixture.catalog("mcp-tests", name, backend))
            added = fixture.tool("added_later", "Published while the client listens", backend, "/simple-text")
            change = lambda: fixture.publish(client, fixture.catalog("mcp-tests", name, backend, [added]))
            with Router(args.binary, f"mcp-tests/{name}", kind, urls) as router:
                try:
                    anyio.run(sdk.check_router, router.url(), mode, change, "added_later")
                    print(f"ok: python sdk, {kind} redis, {mode} mode")
                    passed += 1
                except Exception:
                    traceback.print_exc()
                    print(f"FAILED: python sdk, {kind} redis, {mode} mode")
                    failed += 1

    name = f"conformance-{os.getpid()}"
    fixture.publish(fixture.redis_client("single", redis["single"]), fixture.catalog("mcp-tests", name, backend))
    with Router(args.binary, f"mcp-tests/{name}", "single", redis["single"]) as router:
        output = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "..", "target")), "mcp-tests", "conformance")
        # The active suite, then the pending scenarios that apply to a server
        # like this one, each against the same baseline.
        for selection in ([], ["--scenario", "json-schema-2020-12"], ["--scenario", "server-sse-polling"]):
            result = subprocess.run(
                [
                    "conformance", "server",
                    # localhost, as the DNS rebinding scenario requires.
                    "--url", router.url("localhost"),
                    "--expected-failures", os.path.join(HERE, "conformance-baseline.yml"),
                    "-o", output,
                    *selection,
                ]
            )
            what = " ".join(selection[1:]) or "active suite"
            if result.returncode == 0:
                print(f"ok: conformance, {what} (all failures are in the baseline)")
                passed += 1
            else:
                print(f"FAILED: conformance, {what} (unexpected failures or stale baseline entries above)")
                failed += 1

    print(f"mcp clients: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
