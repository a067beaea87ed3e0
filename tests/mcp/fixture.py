"""The fixture the real clients talk to: an HTTP backend, and the catalog
(MCPTool/MCPPrompt/MCPResource-shaped entries in the catalog crate's JSON
format, docs/catalog.md) that points the router at it. The entries are the
ones the conformance suite's server scenarios call."""

import base64
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
import redis.cluster
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# The backend's Service name: routers accept only backends in their own
# namespace (mcp-tests); run.py points this name at the local backend.
BACKEND_HOST = "backend.mcp-tests.svc"

# A 1x1 red PNG and a silent 1-sample WAV.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQIAAACAgA==")

# path -> (status, content type, body)
ROUTES = {
    "/simple-text": (200, "text/plain", b"This is a simple text response for testing."),
    "/image": (200, "image/png", PNG),
    "/audio": (200, "audio/wav", WAV),
    "/error": (500, "text/plain", b"This tool intentionally returns an error for testing"),
    "/doc": (200, "text/markdown", b"# Served by the backend"),
}


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status, content_type, body):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        route = ROUTES.get(self.path.split("?")[0])
        self._answer(*(route or (404, "text/plain", b"no such route")))

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if self.path == "/echo":
            self._answer(200, "application/json", json.dumps({"echo": json.loads(body or b"{}")}).encode())
            return
        self.do_GET()

    def log_message(self, *args):
        pass


def start_backend():
    """Serves the backend on a free port in a thread; returns its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{BACKEND_HOST}:{server.server_address[1]}"


def _source(kind, name):
    return {"kind": kind, "name": name}


def tool(name, description, backend, path, schema=None):
    return {
        "name": name,
        "description": description,
        "inputSchema": schema or {"type": "object"},
        "endpoint": {"url": backend + path, "timeoutSeconds": 5, "retries": 0},
        "method": "POST",
        "source": _source("MCPTool", name),
    }


def catalog(namespace, name, backend, extra_tools=()):
    """The fixture catalog of server namespace/name."""
    tools = [
        tool("test_simple_text", "Returns simple text", backend, "/simple-text"),
        tool("test_image_content", "Returns a PNG image", backend, "/image"),
        tool("test_audio_content", "Returns a WAV sound", backend, "/audio"),
        tool("test_error_handling", "Always fails", backend, "/error"),
        tool(
            "echo",
            "Echoes its arguments as JSON",
            backend,
            "/echo",
            {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            backend,
            "/echo",
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                    }
                },
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                "additionalProperties": False,
            },
        ),
        *extra_tools,
    ]
    prompts = [
        {
            "name": "test_simple_prompt",
            "description": "A prompt without arguments",
            "messages": [{"role": "user", "content": "This is a simple prompt for testing."}],
            "source": _source("MCPPrompt", "test_simple_prompt"),
        },
        {
            "name": "test_prompt_with_arguments",
            "description": "A prompt with two arguments",
            "arguments": [
                {"name": "arg1", "description": "First test argument", "required": True},
                {"name": "arg2", "description": "Second test argument", "required": True},
            ],
            "messages": [{"role": "user", "content": "Prompt with arguments: arg1='{{ arg1 }}', arg2='{{ arg2 }}'"}],
            "source": _source("MCPPrompt", "test_prompt_with_arguments"),
        },
    ]
    resources = [
        {
            "uri": "test://static-text",
            "name": "static-text",
            "description": "A static text resource",
            "mimeType": "text/plain",
            "content": {"text": "This is the content of the static text resource."},
            "source": _source("MCPResource", "static-text"),
        },
        {
            "uri": "test://static-binary",
            "name": "static-binary",
            "description": "A static binary resource",
            "mimeType": "image/png",
            "content": {"blob": base64.b64encode(PNG).decode()},
            "source": _source("MCPResource", "static-binary"),
        },
        {
            "uri": "test://backend-doc",
            "name": "backend-doc",
            "description": "Read from the backend on every read",
            "content": {"backend": {"url": backend + "/doc", "timeoutSeconds": 5, "retries": 1}},
            "source": _source("MCPResource", "backend-doc"),
        },
    ]
    for entries, key in ((tools, "name"), (prompts, "name"), (resources, "uri")):
        entries.sort(key=lambda entry: entry[key])
    return {
        "server": {"namespace": namespace, "name": name},
        "serverInfo": {"name": "conformance-fixture", "version": "1.0.0"},
        "tools": tools,
        "prompts": prompts,
        "resources": resources,
    }


def redis_client(kind, urls):
    # The testenv's admin user: its nodes let no one in without a password.
    credentials = {
        "username": os.environ.get("MCP_REDIS_USERNAME"),
        "password": os.environ.get("MCP_REDIS_PASSWORD"),
    }
    if kind == "single":
        return redis.Redis.from_url(urls, **credentials)
    first = urls.split(",")[0]
    return redis.cluster.RedisCluster.from_url(first, **credentials)


class Signer:
    """The operator's part: an Ed25519 key that signs catalogs as
    docs/catalog.md describes (key id: the first 8 bytes of the SHA-256 of
    the public key, hex; the signature covers exactly the embedded
    `published` bytes)."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = hashlib.sha256(raw).hexdigest()[:16]
        # What a router's MCP_CATALOG_PUBLIC_KEYS holds.
        self.public_keys = f"{self.kid}:{base64.b64encode(raw).decode()}"

    def envelope(self, published):
        signature = base64.b64encode(self.key.sign(published.encode())).decode()
        head = json.dumps({"kid": self.kid, "signature": signature})
        return head[:-1] + ', "published": ' + published + "}"


SIGNER = Signer()


def publish(client, catalog):
    """Writes the signed catalog, its version and the invalidation as the
    controller does (keys from crates/catalog/src/keys.rs)."""
    server = f"{catalog['server']['namespace']}/{catalog['server']['name']}"
    # Any string that changes with the content will do as the version.
    version = hashlib.sha256(json.dumps(catalog, sort_keys=True).encode()).hexdigest()[:32]
    published = json.dumps({"version": version, "catalog": catalog})
    client.set(f"mcp:{{{server}}}:catalog", SIGNER.envelope(published))
    client.set(f"mcp:{{{server}}}:version", version)
    client.publish(f"mcp:{{{server}}}:invalidate", json.dumps({"server": catalog["server"], "version": version}))
