#!/usr/bin/env bash
# `make test`: whole pytest suite; starts Redis if none is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
if ! redis_reachable "$REDIS_URL"; then
  echo "Redis not reachable at $REDIS_URL: starting a private one on port 6391"
  start_private_redis 6391
  export REDIS_URL=redis://127.0.0.1:6391/15
fi
if [ -z "${MLAAS_SKIP_BROWSER:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "NOTE: /usr/bin/chromium not found: browser tests will be skipped (apt-get install chromium chromium-driver)"
fi
exec .venv/bin/python -m pytest "$@"
