"""Gunicorn settings the product ships (`Procfile`'s web process and bench/stack.py both read this file).

Command-line flags override these; `WEB_CONCURRENCY` sets the number of worker processes (gunicorn's own
variable). Every value here is set for a reason a load run showed; see docs/PERFORMANCE.md, "Load run".
"""

import os

# Threads, not processes, carry the concurrency: a request mostly waits on PostgreSQL, Redis or the AWS
# endpoint, and a thread costs far less memory than a Django process. An idle keep-alive connection costs
# a gthread worker a poller entry, not a thread.
# gthread, closing idle keep-alive connections as soon as it is stopped (see mlaas_portal/gunicorn_worker.py).
worker_class = "mlaas_portal.gunicorn_worker.KeepaliveClosingThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 4

# Keep idle connections open longer than any client that reuses them keeps them idle (aiohttp 15 s, an AWS
# ALB or nginx 60 s by default), so the client always closes an idle connection first. With gunicorn's
# default of 2 s the server closed connections the client had just sent its next request on: the client
# saw "connection reset by peer" (ECONNRESET, or "server disconnected"), and a client may retry that only
# for idempotent requests, so a POST failed. The load run lost 2 upload POSTs this way; bench/keepalive.py
# shows the race (2 s: resets; 75 s: none).
keepalive = 75

# The arbiter kills a worker that stops beating for `timeout` s, and with it every request the worker holds
# (their clients see resets). A gthread worker beats from its main loop at least once a second whatever its
# threads do, so this fires only on a stuck process, not on a slow request; 60 s leaves room for a main loop
# starved of CPU on a busy machine.
timeout = 60
# On SIGTERM/SIGHUP a worker stops accepting, closes its idle connections and finishes its requests in flight
# for up to this long.
graceful_timeout = 30
# Connections waiting for accept(): the gthread worker accepts eagerly (up to worker_connections, 1,000),
# so this only fills when every worker is stopped; gunicorn's default, stated so it is a decision.
backlog = 2048
# No max_requests: recycling a worker closes its keep-alive connections, the same race as a short keepalive.
# gunicorn 26's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl): each server that
# starts (make run, a bench stack, a test) unlinks and takes over the previous one's, and removes it on exit.
# Nothing here uses it (`gunicornc`); the arbiter's signals do the same.
control_socket_disable = True
