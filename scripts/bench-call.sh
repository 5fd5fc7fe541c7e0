#!/usr/bin/env bash
# Overhead of one `backstop call` against the same request made with curl, to a local
# server that answers at once; and the time from a 429 with `Retry-After: 1` to the
# retried request, as the server sees it.
#
#   scripts/bench-call.sh            # RUNS=200 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-200}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need hyperfine || ! need curl; then
    if [ "${BENCH_NO_INSTALL:-}" != 1 ] && need apt-get; then
        apt-get update -qq && apt-get install -y -qq hyperfine curl >/dev/null
    fi
fi
need hyperfine || { echo "hyperfine is needed (apt-get install hyperfine)"; exit 1; }
need curl || { echo "curl is needed (apt-get install curl)"; exit 1; }

cargo build --release --quiet
BIN=$PWD/target/release/backstop
work=$(mktemp -d)
trap 'kill "${server_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

# A server on 127.0.0.1 that answers every chat completion at once; a request whose
# prompt is "429 first" gets one 429 with Retry-After: 1 before its answer. It logs the
# arrival time of every request.
cat > "$work/server.py" <<'PY'
import http.server, json, sys, time
seen_429 = set()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        prompt = body["messages"][-1]["content"]
        with open(sys.argv[2], "a") as log:
            log.write(f"{time.time():.6f} {prompt}\n")
        key = self.headers.get("idempotency-key")
        if prompt == "429 first" and key not in seen_429:
            seen_429.add(key)
            data = b'{"error":{"message":"slow down"}}'
            self.send_response(429); self.send_header("retry-after", "1")
        else:
            data = json.dumps({"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}],
                               "usage":{"prompt_tokens":3,"completion_tokens":1}}).encode()
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers(); self.wfile.write(data)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$work/server.py" "$port" "$work/arrivals.log" &
server_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" -X POST -d '{"messages":[{"content":"warm"}]}' && break; sleep 0.1; done

cat > "$work/policy.yaml" <<YAML
version: 1
retry: { max_attempts: 3, backoff: { initial: 100ms } }
rollback: { on: never }
providers:
  local: { kind: openai, base_url: "http://127.0.0.1:$port", api_key_env: BENCH_KEY }
models:
  m: { provider: local, model: bench, max_tokens: 16 }
model: m
YAML
export BACKSTOP_HOME=$work/store BENCH_KEY=bench-key
body='{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":false}'
cd "$work"
hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$work/call.json" \
    "curl -s -X POST http://127.0.0.1:$port/chat/completions -H 'authorization: Bearer bench-key' -H 'content-type: application/json' -d '$body'" \
    "$BIN -q call -p $work/policy.yaml hi" >/dev/null
python3 - "$work/call.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
med = [x["median"] * 1000 for x in r]
print("| command | median ms | mean ± σ ms |")
print("|---|---:|---:|")
for name, x in zip(["curl (same request)", "backstop call"], r):
    print(f"| {name} | {x['median']*1000:.2f} | {x['mean']*1000:.2f} ± {x['stddev']*1000:.2f} |")
print(f"backstop call adds {med[1]-med[0]:+.2f} ms (median) over curl")
PY

: > "$work/arrivals.log"
for i in 1 2 3 4 5; do
    "$BIN" -q call -p "$work/policy.yaml" "429 first" >/dev/null
done
python3 - "$work/arrivals.log" <<'PY'
import sys
rows = [l.split(" ", 1) for l in open(sys.argv[1]) if l.strip()]
times = [float(t) for t, p in rows if p.strip() == "429 first"]
gaps = [(b - a) * 1000 for a, b in zip(times[0::2], times[1::2])]
print("429 with Retry-After: 1 -> retried request, as the server saw it (ms): " + ", ".join(f"{g:.1f}" for g in gaps))
print(f"median {sorted(gaps)[len(gaps)//2]:.1f} ms (1000 ms asked for)")
PY
