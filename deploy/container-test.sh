#!/usr/bin/env bash
# Builds the container image (Dockerfile) and runs a real story in it: the
# server gets ready, a webhook is accepted, the run is stored as succeeded in
# the data volume, and a stop is clean. Uses docker or podman when one of them
# answers (CONTAINER_ENGINE=… to choose); without a running engine it says so
# and succeeds, so that .ci/run works on machines without one.
set -euo pipefail
cd "$(dirname "$0")/.."

engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1 && timeout 20 "$candidate" info >/dev/null 2>&1; then
      engine="$candidate"
      break
    fi
  done
fi
if [ -z "$engine" ]; then
  echo "container test skipped: no running container engine (docker or podman)"
  exit 0
fi

if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi

tag="tale-ci:$$"
name="tale-ci-$$"
stories="$(mktemp -d)"
port="${CONTAINER_TEST_PORT:-18080}"
cleanup() {
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  "$engine" volume rm -f "$name-data" >/dev/null 2>&1 || true
  "$engine" rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$stories"
}
trap cleanup EXIT

echo "building the image with $engine"
"$engine" build -t "$tag" .

cp examples/quickstart/alert-summary.yaml "$stories/"
chmod -R a+rX "$stories"
"$engine" run -d --name "$name" -p "127.0.0.1:$port:8080" \
  -v "$stories:/stories:ro" -v "$name-data:/data" \
  -e TALE_CREDENTIAL_QUICKSTART_SECRET=container-test-secret "$tag" >/dev/null

for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
    break
  fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || {
  "$engine" logs "$name"
  echo "the server in the container never got ready"
  exit 1
}

curl -fsS -X POST -H 'Authorization: Bearer container-test-secret' -H 'Content-Type: application/json' \
  --data @examples/quickstart/alerts.json "http://127.0.0.1:$port/webhook/quickstart-alerts" >/dev/null

# The run is stored as succeeded in the data volume.
for _ in $(seq 1 30); do
  if "$engine" exec "$name" tale runs --db sqlite:/data/tale.db --status succeeded | grep -q alert-summary; then
    ok=1
    break
  fi
  sleep 1
done
if [ -z "${ok:-}" ]; then
  "$engine" logs "$name"
  echo "the webhook's run was not stored as succeeded"
  exit 1
fi

# A stop is clean: SIGTERM, then the container exits 0.
"$engine" stop -t 20 "$name" >/dev/null
status="$("$engine" inspect -f '{{.State.ExitCode}}' "$name")"
if [ "$status" != "0" ]; then
  "$engine" logs "$name"
  echo "the server exited with $status on SIGTERM"
  exit 1
fi
echo "container test passed"
