# Shared helpers for run.sh / test.sh / .ci/run.
redis_reachable() {  # $1 = redis URL
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

ensure_redis_binary() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server with apt-get…"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
  else
    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2
    return 1
  fi
}

# Start a private Redis on $1 (port) unless one answers there; prints its URL.
start_private_redis() {
  local port=$1 dir=.local/redis
  mkdir -p "$dir"
  if redis_reachable "redis://127.0.0.1:$port/0"; then return 0; fi
  ensure_redis_binary || return 1
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$PWD/$dir/redis.pid" --logfile "$PWD/$dir/redis.log"
  for _ in $(seq 1 50); do redis_reachable "redis://127.0.0.1:$port/0" && return 0; sleep 0.1; done
  echo "private Redis did not start on port $port (see $dir/redis.log)" >&2
  return 1
}
