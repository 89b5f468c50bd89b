"""The web server's worker class (gunicorn.conf.py): gunicorn's gthread worker, closing idle connections at once
when it is asked to stop.

gunicorn.conf.py keeps idle connections open 75 s (so clients, not the server, close them). gthread's graceful
stop waits for every open connection, idle keep-alive ones included, until they expire or `graceful_timeout`
passes: one open browser tab made every stop of `make run` or a deploy wait the full 30 s. An idle connection
has no request in flight, so closing it on stop loses nothing; requests in flight still finish.
Written against gunicorn 26.2.0's ThreadWorker (requirements.txt pins it).
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class KeepaliveClosingThreadWorker(ThreadWorker):
    def handle_exit(self, sig, frame):
        stopping = self.alive
        super().handle_exit(sig, frame)
        if stopping:  # the poller belongs to the main loop: close there
            self.method_queue.defer(self.close_idle_connections)

    def close_idle_connections(self) -> None:
        while self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass  # already unregistered
            self.nr_conns -= 1
            conn.close()
