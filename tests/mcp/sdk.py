"""The Python MCP SDK against a router: list and call tools, get a prompt,
read resources, and receive tools/list_changed after the catalog changes.
Once over the initialize handshake (2025-11-25: a session and its GET
stream) and once over discovery (2026-07-28: stateless requests and a
subscriptions/listen stream)."""

import logging
import urllib.request

import anyio
from mcp import Client


def _method(message):
    message = getattr(message, "root", message)
    return getattr(message, "method", None)


def _open_streams(url):
    """The router's mcp_router_open_streams gauge, from its /metrics."""
    metrics = url.rsplit("/mcp", 1)[0] + "/metrics"
    with urllib.request.urlopen(metrics, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("mcp_router_open_streams "):
                return float(line.split()[1])
    return 0.0


async def _stream_opened(url):
    """Waits until the router follows a notification stream."""
    with anyio.fail_after(10):
        while await anyio.to_thread.run_sync(_open_streams, url) < 1:
            await anyio.sleep(0.05)


class _Records(logging.Handler):
    """What the SDK logs while a check runs, at any level (it logs, rather
    than raises, a session DELETE it did not take for a success)."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _text(block):
    return getattr(block, "text", None)


async def check_router(url, mode, change_catalog, added_tool):
    """Runs every check against the router at `url`; `change_catalog()`
    publishes a catalog that adds `added_tool`. Raises AssertionError."""
    tools_changed = anyio.Event()

    async def on_message(message):
        if _method(message) == "notifications/tools/list_changed":
            tools_changed.set()

    records, logger = _Records(), logging.getLogger("mcp")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(records)
    try:
        await _check(url, mode, change_catalog, added_tool, on_message, tools_changed)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    # Leaving the client ends a session with DELETE: it must take the answer.
    failed = [m for m in records.messages if "termination failed" in m.lower()]
    assert not failed, failed


async def _check(url, mode, change_catalog, added_tool, on_message, tools_changed):
    async with Client(url, mode=mode, message_handler=on_message, cache=None) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert "test_simple_text" in names and "echo" in names, names
        assert added_tool not in names, names

        text = await client.call_tool("test_simple_text", {})
        assert not text.is_error and _text(text.content[0]) == "This is a simple text response for testing.", text
        echo = await client.call_tool("echo", {"message": "hi"})
        assert echo.structured_content == {"echo": {"message": "hi"}}, echo
        failed = await client.call_tool("test_error_handling", {})
        assert failed.is_error and "intentionally" in _text(failed.content[0]), failed
        invalid = await client.call_tool("echo", {"message": 5})
        assert invalid.is_error and "/message" in _text(invalid.content[0]), invalid

        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "one", "arg2": "two"})
        assert _text(prompt.messages[0].content) == "Prompt with arguments: arg1='one', arg2='two'", prompt

        static = await client.read_resource("test://static-text")
        assert static.contents[0].text == "This is the content of the static text resource.", static
        fetched = await client.read_resource("test://backend-doc")
        assert fetched.contents[0].text == "# Served by the backend", fetched

        if mode == "legacy":
            # The notification rides the session's GET stream, which the
            # SDK opens after the handshake.
            await _stream_opened(url)
            change_catalog()
            with anyio.fail_after(5):
                await tools_changed.wait()
        else:
            async with client.listen(tools_list_changed=True) as subscription:
                change_catalog()
                with anyio.fail_after(5):
                    async for _event in subscription:
                        break
        names = [t.name for t in (await client.list_tools()).tools]
        assert added_tool in names, names
