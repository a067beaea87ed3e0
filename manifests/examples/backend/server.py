#!/usr/bin/env python3
"""A sample HTTP backend for the example MCPTools and MCPResource.

Standard library only, so it runs anywhere Python 3.9+ does: in the
cluster from the stock python image (examples/backend.yaml mounts this
file), or on your machine:

    python3 manifests/examples/backend/server.py --port 8081

Tool calls arrive as the MCP router sends them: the tool's arguments as a
JSON body (POST), or as the query string (GET). Every answer is JSON.

    POST /forecast  {"city": "Oslo", "days": 2}  -> a deterministic forecast
    POST /convert   {"celsius": 21.5}           -> the temperature in Fahrenheit
    GET  /time?utcOffsetHours=2                 -> the current time at that offset
    GET  /stations                              -> the weather stations (a resource)
    GET  /healthz                               -> ok
"""

import argparse
import datetime
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CONDITIONS = ["sunny", "cloudy", "rain", "snow", "fog", "wind"]

STATIONS = [
    {"id": "osl", "city": "Oslo", "latitude": 59.91, "longitude": 10.75},
    {"id": "lis", "city": "Lisbon", "latitude": 38.72, "longitude": -9.14},
    {"id": "nbo", "city": "Nairobi", "latitude": -1.29, "longitude": 36.82},
]


class BadRequest(Exception):
    """The caller's input is wrong: answered with 400 and the reason."""


def forecast(arguments):
    city = arguments.get("city")
    if not isinstance(city, str) or not city:
        raise BadRequest("'city' must be a non-empty string")
    days = arguments.get("days", 1)
    if not isinstance(days, int) or not 1 <= days <= 7:
        raise BadRequest("'days' must be an integer from 1 to 7")
    # Derived from the city's name, so the same question gets the same
    # answer and tests can check it.
    seed = hashlib.sha256(city.lower().encode()).digest()
    return {
        "city": city,
        "days": [
            {
                "day": day + 1,
                "conditions": CONDITIONS[seed[day] % len(CONDITIONS)],
                "highCelsius": seed[day + 8] % 35 - 5,
            }
            for day in range(days)
        ],
    }


def convert(arguments):
    celsius = arguments.get("celsius")
    if isinstance(celsius, bool) or not isinstance(celsius, (int, float)):
        raise BadRequest("'celsius' must be a number")
    return {"celsius": celsius, "fahrenheit": round(celsius * 9 / 5 + 32, 2)}


def current_time(arguments):
    raw = arguments.get("utcOffsetHours", "0")
    try:
        offset = int(raw)
    except ValueError:
        raise BadRequest("'utcOffsetHours' must be an integer") from None
    if not -12 <= offset <= 14:
        raise BadRequest("'utcOffsetHours' must be from -12 to 14")
    zone = datetime.timezone(datetime.timedelta(hours=offset))
    return {"utcOffsetHours": offset, "time": datetime.datetime.now(zone).isoformat(timespec="seconds")}


POST_ROUTES = {"/forecast": forecast, "/convert": convert}
GET_ROUTES = {"/time": current_time, "/stations": lambda _: {"stations": STATIONS}, "/healthz": lambda _: "ok"}


class Handler(BaseHTTPRequestHandler):
    server_version = "mcp-example-backend/1"

    def do_GET(self):
        url = urlparse(self.path)
        arguments = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.answer(GET_ROUTES.get(url.path), arguments)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            arguments = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            self.send_json(400, {"error": f"the body is not JSON: {error}"})
            return
        if not isinstance(arguments, dict):
            self.send_json(400, {"error": "the body must be a JSON object"})
            return
        self.answer(POST_ROUTES.get(urlparse(self.path).path), arguments)

    def answer(self, route, arguments):
        if route is None:
            self.send_json(404, {"error": f"no such endpoint: {self.command} {self.path}"})
            return
        try:
            self.send_json(200, route(arguments))
        except BadRequest as error:
            self.send_json(400, {"error": str(error)})

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
