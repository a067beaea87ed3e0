#!/usr/bin/env bash
# Real MCP clients against the real router (tests/mcp/run.py): the Python
# SDK and the official conformance suite. Installs what they need from the
# pinned files here: the SDK into a virtualenv under the cargo target dir,
# the suite and Node 22 (the `node` package) into tests/mcp/node_modules.
# Needs the testenv's Redis: run it with `make test-mcp` (or inside
# `tests/testenv/testenv.sh run --`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
: "${MCP_REDIS_URL:?not set: run inside the testenv (make test-mcp)}"

cargo build --quiet --bin mcp-operator

venv=$target/mcp-tests/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

if ! [ "$here/node_modules/.package-lock.json" -nt "$here/package-lock.json" ]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi

PATH="$here/node_modules/.bin:$PATH" "$venv/bin/python" "$here/run.py" \
  --binary "$target/debug/mcp-operator"
