#!/usr/bin/env bash
# Fuzz depd's HTTP API with schemathesis, driven by the committed OpenAPI
# document (docs/openapi.json), against a real daemon running the demo (one
# DEP name synced from an in-process depsim). Every check, at least 100
# examples per operation, the stateful phase included; exceptions are in
# schemathesis.toml beside this script. Exits non-zero on any failure.
#
#   bash integration/schemathesis/run.sh            # from the repository root
#   ST_MAX_TIME=120 bash integration/schemathesis/run.sh
#
# Only the paths schemathesis cannot form requests for are left out: the
# authenticating proxy (/proxy/...).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
max_time=${ST_MAX_TIME:-420}
version=4.32.5

venv=target/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

cargo build --quiet --bin depd
work=$(mktemp -d)
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
key="schemathesis-$(openssl rand -hex 12)"
# Short upstream timeouts and two attempts per request: names the fuzzer
# points at unreachable base URLs fail their cycles in seconds, so a
# ?wait=1 sync answers within the request timeout below.
# The MDM service is on, so its parsers meet the fuzzer too: a device CA
# (no identity the fuzzer could present chains to it), migration open.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
  -subj "/CN=schemathesis device CA" -days 2 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign >/dev/null 2>&1
cat > "$work/depd.toml" <<CONF
api_key = "$key"
listen = "127.0.0.1:$port"
data_dir = "$work/data"

[demo]
name = "demo"
devices = 50

[apple]
connect_timeout_secs = 2
request_timeout_secs = 5

[sync]
interval_secs = 60
request_retry_first_ms = 100
request_retry_max_secs = 5
request_max_failures = 2

[mdm]
enabled = true
ca_file = "$work/ca.pem"
migration = true
CONF

# The fuzzer sends thousands of wrong credentials on purpose.
DEPD_AUTH_FAILURE_LIMIT=0 target/debug/depd serve --config "$work/depd.toml" \
  >"$work/depd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null

# schemathesis runs every check by default; `--checks all` on the command
# line would override the per-operation exceptions of the config file.
# `--generation-with-security-parameters false`: the API key is sent by
# `--auth` on every request, so generating cases that drop or mangle the
# Authorization header only produced false reports (the check blamed a
# missing header that --auth had put back). Authentication failures are
# covered by depd's own integration tests (integration/api/auth.rs).
status=0
(cd "$work" && "$root/$venv/bin/st" --config-file "$root/integration/schemathesis/schemathesis.toml" \
  run "$root/docs/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --auth "depserver:$key" \
  --max-examples 100 \
  --max-time "$max_time" \
  --request-timeout 60 \
  --exclude-path-regex '^/proxy/' \
  --seed 20261205 \
  --generation-deterministic \
  --generation-with-security-parameters false \
  --no-color) || status=$?

if ! kill -0 "$daemon_pid" 2>/dev/null; then
  echo "depd exited during the run:"; tail -50 "$work/depd.log"; exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (exit $status); depd's log tail:"
  tail -20 "$work/depd.log"
fi
exit "$status"
