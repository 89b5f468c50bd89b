#!/usr/bin/env bash
# `make run`: migrate, start emulator + Redis, seed the demo, then web + workers (Ctrl-C stops all).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
mkdir -p .local
export DJANGO_SETTINGS_MODULE=mlaas_portal.settings
EMULATOR_PORT=${MLAAS_EMULATOR_PORT:-4566}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL-http://127.0.0.1:$EMULATOR_PORT}
export MLAAS_EMULATOR_STATE=${MLAAS_EMULATOR_STATE:-$PWD/.local/emulator.json}
# The emulator's AWS state (S3 objects, IAM, SQS, the model registry...) survives restarts in this file.
MLAAS_EMULATOR_SNAPSHOT=${MLAAS_EMULATOR_SNAPSHOT-$PWD/.local/emulator-state.pickle}
MLAAS_EMULATOR_SNAPSHOT_INTERVAL=${MLAAS_EMULATOR_SNAPSHOT_INTERVAL:-1}
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  # Newest first: web and workers stop before the emulator and Redis they use.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done
  [ -f .local/redis/redis.pid ] && [ -n "${PRIVATE_REDIS:-}" ] && kill "$(cat .local/redis/redis.pid)" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped."
}
trap cleanup EXIT INT TERM

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
if ! redis_reachable "$REDIS_URL"; then
  echo "Redis not reachable at $REDIS_URL: starting a private one on port 6390"
  start_private_redis 6390
  PRIVATE_REDIS=1
  export REDIS_URL=redis://127.0.0.1:6390/0
fi

if [ -n "$AWS_ENDPOINT_URL" ]; then
  : > .local/emulator.log
  # Its own session: Ctrl-C reaches web and workers first; the cleanup stops the emulator after them.
  setsid .venv/bin/python -m emulator --port "$EMULATOR_PORT" --state "$MLAAS_EMULATOR_STATE" \
    --snapshot "$MLAAS_EMULATOR_SNAPSHOT" --snapshot-interval "$MLAAS_EMULATOR_SNAPSHOT_INTERVAL" \
    > .local/emulator.log 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    grep -qE "ready|reusing" .local/emulator.log 2>/dev/null && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat .local/emulator.log; exit 1; }
    sleep 0.2
  done
fi

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py platform_bootstrap  # shared intake queue, rules, ledger, step image (idempotent)
.venv/bin/python manage.py deploy_pipeline  # the definition both engines execute (the local runtime reads it back)
# The demo tenant acme gets a test endpoint as soon as its sample's model is registered (the scheduler).
export MLAAS_DEMO_ENDPOINT=${MLAAS_DEMO_ENDPOINT:-1}
# Workers first, so the demo's uploads flow through intake and dispatch as soon as they land.
# MLAAS_BUILD_WORKERS build worker processes (default 1): each runs one build at a time.
.venv/bin/honcho -f Procfile start -c "builds=${MLAAS_BUILD_WORKERS:-1}" &
PIDS+=($!)
sleep 2
.venv/bin/python manage.py seed_demo
cat <<MSG

  MLaaS Portal is running:  http://127.0.0.1:8000
  Vendor admin login:       admin / admin
  Demo tenant logins:       owner@acme.example / acme-demo (also globex, initech)
  AWS emulator endpoint:    ${AWS_ENDPOINT_URL:-real AWS}   (state: $MLAAS_EMULATOR_STATE)
  AWS emulator data kept in: ${MLAAS_EMULATOR_SNAPSHOT:-memory only (MLAAS_EMULATOR_SNAPSHOT is empty)}
  Queues dashboard:         http://127.0.0.1:8000/admin/rq/
  Press Ctrl-C to stop everything.

MSG
wait "${PIDS[-1]}"
