#!/usr/bin/env bash
# Jaeger's all-in-one collector for the trace test (tests/tracing.rs),
# built once at its pinned version into the cache. `go install` refuses
# it (its go.mod has replace directives), so the module is downloaded and
# built in place; the proxy serves it where github.com is unreachable.
#
#   jaeger.sh binary   install when missing; print the binary's path
set -euo pipefail
cache="${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-operator}"
module=github.com/jaegertracing/jaeger
version=v1.76.0
bin="$cache/jaeger-$version/jaeger"

case "${1:-}" in
  binary)
    if [ ! -x "$bin" ]; then
      echo "jaeger.sh: building jaeger $version (a few minutes, once)" >&2
      dir=$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
      [ -n "$dir" ] || { echo "jaeger.sh: go mod download $module@$version failed" >&2; exit 1; }
      mkdir -p "$(dirname "$bin")"
      # Built beside the final name, then moved: a killed build leaves no
      # half-written binary that the next run would take for installed.
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$bin.partial" ./cmd/jaeger) >&2
      mv "$bin.partial" "$bin"
    fi
    echo "$bin"
    ;;
  *) echo "usage: $0 binary" >&2; exit 2 ;;
esac
