#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for backstop's tests (127.0.0.1 only).

Decodes each POST with the official `opentelemetry-proto` package -- protobuf with
ExportTraceServiceRequest.FromString, JSON with google.protobuf.json_format.Parse
after turning OTLP/JSON's hex trace and span ids into the base64 the protobuf JSON
mapping expects -- and appends what it decoded to --out as one JSON line per request.

  otlp_receiver.py --port-file P --out F [--delay S] [--status N]

Exits 3, saying how to install it, when opentelemetry-proto cannot be imported.
"""

import argparse
import base64
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
except ImportError as e:  # pragma: no cover - the message is the point
    sys.stderr.write(
        f"otlp_receiver.py: cannot import opentelemetry-proto ({e}) with {sys.executable}; "
        "install it with: python3 -m venv target/test-venv && "
        "target/test-venv/bin/pip install opentelemetry-proto "
        "(or point BACKSTOP_TEST_PYTHON at a python3 that has it)\n"
    )
    sys.exit(3)

ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def hex_ids_to_base64(node):
    """OTLP/JSON writes ids as hex; the protobuf JSON mapping reads bytes as base64."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ID_KEYS and isinstance(v, str):
                node[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                hex_ids_to_base64(v)
    elif isinstance(node, list):
        for v in node:
            hex_ids_to_base64(v)


def json_shape(doc):
    """How the first span was written in OTLP/JSON: the spec's hex ids, 64-bit
    integers as strings, enums as numbers."""
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    return {
        "traceId": span.get("traceId"),
        "spanId": span.get("spanId"),
        "startTimeUnixNano": type(span.get("startTimeUnixNano")).__name__,
        "kind": type(span.get("kind")).__name__,
        "intValue": sorted({type(a["value"]["intValue"]).__name__
                            for a in span.get("attributes", []) if "intValue" in a["value"]}),
    }


def any_value(v):
    """An attribute's value; an integer as {"int": n}, so a test sees its type."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "int_value":
        return {"int": v.int_value}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def decode(content_type, body):
    if content_type.startswith("application/x-protobuf"):
        req = ExportTraceServiceRequest.FromString(body)
        shape = None
    elif content_type.startswith("application/json"):
        doc = json.loads(body)
        shape = json_shape(doc)
        hex_ids_to_base64(doc)
        req = json_format.Parse(json.dumps(doc), ExportTraceServiceRequest())
    else:
        raise ValueError(f"unexpected content type {content_type!r}")
    spans, resources = [], []
    for rs in req.resource_spans:
        resources.append(attributes(rs.resource.attributes))
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append({
                    "name": s.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "trace_state": s.trace_state,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status_code": s.status.code,
                    "status_message": s.status.message,
                    "attributes": attributes(s.attributes),
                    "events": [{"name": e.name, "time": e.time_unix_nano,
                                "attributes": attributes(e.attributes)} for e in s.events],
                })
    return {"resources": resources, "spans": spans, "json_shape": shape}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--status", type=int, default=200)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ctype = self.headers.get("Content-Type", "")
            entry = {"path": self.path, "content_type": ctype,
                     "headers": {k.lower(): v for k, v in self.headers.items()}}
            try:
                entry.update(decode(ctype, body))
                status = args.status
            except Exception as e:  # noqa: BLE001 - reported to the test
                entry["error"] = f"{type(e).__name__}: {e}"
                status = 400
            with open(args.out, "a") as f:
                f.write(json.dumps(entry) + "\n")
            if args.delay:
                time.sleep(args.delay)
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
