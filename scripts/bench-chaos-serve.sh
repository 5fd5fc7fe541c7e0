#!/usr/bin/env bash
# bench-chaos-serve.sh — what `backstop chaos serve` adds to a request.
#
# One python3 http.client connection (keep-alive) sends N chat requests, whole and
# streamed, to `backstop chaos serve` with no faults and no latency, and the same to a
# yardstick: python's own http.server answering the same JSON. Prints requests a second
# and the p50/p99 of each request's time. Aim: the server is never the slow side of a
# test (well above the yardstick, p99 under 5 ms).
#
# Tunables: N (2000), BIN (default: a release build of this checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-2000}
say() { printf '==> %s\n' "$*" >&2; }

if [ -z "${BIN:-}" ]; then
    say "building backstop (release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    BIN=$ROOT/target/release/backstop
fi
DIR=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"' EXIT
printf 'version: 1\ncalls:\n  default: { tokens: { input: 10, output: 3 } }\n' > "$DIR/faults.yaml"

"$BIN" -q chaos serve "$DIR/faults.yaml" > "$DIR/addr" &
PIDS+=($!)
cat > "$DIR/yardstick.py" <<'EOF'
import http.server, json, socket, sys
BODY = json.dumps({"object": "chat.completion", "choices": [{"index": 0,
    "message": {"role": "assistant", "content": "chaos: ok"}, "finish_reason": "stop"}]}).encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("listening on http://127.0.0.1:%d" % s.server_port, flush=True)
s.serve_forever()
EOF
python3 "$DIR/yardstick.py" > "$DIR/yard" &
PIDS+=($!)
for f in addr yard; do
    for _ in $(seq 100); do [ -s "$DIR/$f" ] && break; sleep 0.05; done
done

cat > "$DIR/client.py" <<'EOF'
import http.client, json, sys, time
url, n, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
host, port = url.split("//")[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port))
body = json.dumps({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
times = []
start = time.perf_counter()
for _ in range(n):
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
    conn.getresponse().read()
    times.append(time.perf_counter() - t)
total = time.perf_counter() - start
times.sort()
print("%-34s %7.0f req/s   p50 %.2f ms   p99 %.2f ms" % (sys.argv[4], n / total,
      times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3))
EOF
CHAOS=$(sed 's/listening on //' "$DIR/addr")
YARD=$(sed 's/listening on //' "$DIR/yard")
python3 "$DIR/client.py" "$YARD" "$N" 0 "yardstick (python http.server)"
python3 "$DIR/client.py" "$CHAOS" "$N" 0 "chaos serve, whole answers"
python3 "$DIR/client.py" "$CHAOS" "$N" 1 "chaos serve, streamed answers"
