"""A small TCP proxy for fault injection between Strata processes.

    p = Proxy(("127.0.0.1", node_rpc_port)).start()   # listens on 127.0.0.1:p.port
    ... point a peer at 127.0.0.1:p.port instead of the real port ...
    p.set_mode("blackhole")        # bytes vanish both ways, connections stay open
    p.set_mode("blackhole", "up")  # only client -> server bytes vanish
    p.set_delay(0.2)               # each forwarded chunk waits 0.2 s first
    p.set_mode("cut")              # reset every connection; new ones are reset at once
    p.set_mode("forward")          # back to normal (for new connections; see below)
    p.stop()

Modes, per direction ("up" = client -> target, "down" = target -> client):
  forward    pass bytes through (after `delay` seconds per chunk, if set)
  blackhole  read and drop the bytes (so the sender never blocks, like a
             network that silently loses packets); connections stay open
  cut        (both directions) close every connection with a TCP reset and
             reset new connections right after accepting them

A connection accepted while both directions are blackholed is never
connected to the target; it stays dead (dropping bytes) even after the mode
returns to forward, like a connection whose SYN-ACK was lost would time out.

Counters in p.stats: connections, bytes_up, bytes_down (forwarded),
dropped_up, dropped_down (blackholed), delayed_chunks, resets.

Every loop waits with a bounded select() timeout and checks the stop flag.
Standard library only; listens on 127.0.0.1 only.
"""

import select
import socket
import struct
import threading
import time

_TICK = 0.05


def _rst_close(sock):
    """Close with a TCP reset (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Proxy:
    def __init__(self, target, listen_port=0, host="127.0.0.1"):
        self.target = target
        self.mode = {"up": "forward", "down": "forward"}
        self.delay = 0.0
        self.stats = {k: 0 for k in ("connections", "bytes_up", "bytes_down", "dropped_up",
                                     "dropped_down", "delayed_chunks", "resets")}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = set()
        self._threads = []
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, listen_port))
        self._lsock.listen(128)
        self.port = self._lsock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)

    # -- control -------------------------------------------------------------

    def start(self):
        t = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def set_mode(self, mode, direction="both"):
        assert mode in ("forward", "blackhole", "cut"), mode
        assert direction in ("both", "up", "down"), direction
        if mode == "cut":
            self.mode = {"up": "cut", "down": "cut"}
            self.reset_all()
            return
        for d in (("up", "down") if direction == "both" else (direction,)):
            self.mode[d] = mode
        if direction != "both" and "cut" in self.mode.values():
            for d in self.mode:
                if self.mode[d] == "cut":
                    self.mode[d] = "forward"

    def set_delay(self, seconds):
        self.delay = float(seconds)

    def reset_all(self):
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close(reset=True)

    def stop(self, timeout=10.0):
        """Stop accepting, reset every connection, join all threads (bounded).
        Returns True when every thread ended."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        # the accept loop first: once it has ended no connection or thread
        # can be added behind our back, so the list below is complete
        if self._threads:
            self._threads[0].join(max(0.0, deadline - time.monotonic()))
        self.reset_all()
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        try:
            self._lsock.close()
        except OSError:
            pass
        return not any(t.is_alive() for t in self._threads)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _count(self, key, n=1):
        with self._lock:
            self.stats[key] += n

    # -- workers -------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self._lsock], [], [], _TICK)
            if not r:
                continue
            try:
                client, _ = self._lsock.accept()
            except OSError:
                continue
            self._count("connections")
            if "cut" in self.mode.values():
                self._count("resets")
                _rst_close(client)
                continue
            upstream = None
            if self.mode["up"] != "blackhole" or self.mode["down"] != "blackhole":
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    self._count("resets")
                    _rst_close(client)
                    continue
            conn = _Conn(self, client, upstream)
            with self._lock:
                self._conns.add(conn)
            for src, dst, d in ((client, upstream, "up"), (upstream, client, "down")):
                if src is None:
                    continue
                t = threading.Thread(target=conn.pump, args=(src, dst, d), daemon=True,
                                     name="proxy-%s" % d)
                t.start()
                self._threads.append(t)
            if upstream is None:  # dead connection: drain the client only
                pass
        # leave connections to stop()/reset_all()

    def _forget(self, conn):
        with self._lock:
            self._conns.discard(conn)


class _Conn:
    def __init__(self, proxy, client, upstream):
        self.p, self.client, self.upstream = proxy, client, upstream
        self.closed = False
        self.lock = threading.Lock()
        self.done = 0

    def close(self, reset=False):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        if reset:
            self.p._count("resets")
        for s in (self.client, self.upstream):
            if s is not None:
                if reset:
                    _rst_close(s)
                else:
                    try:
                        s.close()
                    except OSError:
                        pass
        self.p._forget(self)

    def pump(self, src, dst, d):
        p = self.p
        try:
            while not p._stop.is_set() and not self.closed:
                try:
                    r, _, _ = select.select([src], [], [], _TICK)
                except (OSError, ValueError):
                    break
                if not r:
                    continue
                try:
                    data = src.recv(65536)
                except OSError:
                    break
                if not data:
                    # EOF: pass the half-close on (unless blackholed/dead)
                    if dst is not None and p.mode[d] == "forward":
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                    break
                mode = p.mode[d]
                if mode == "cut":
                    break
                if mode == "blackhole" or dst is None:
                    p._count("dropped_" + d, len(data))
                    continue
                if p.delay > 0:
                    p._count("delayed_chunks")
                    if p._stop.wait(p.delay):
                        break
                # counted before sending, so a peer that sees the bytes can
                # also see the counter (no race with a test reading stats)
                p._count("bytes_" + d, len(data))
                try:
                    dst.sendall(data)
                except OSError:
                    break
        finally:
            with self.lock:
                self.done += 1
                both = self.done >= (2 if self.upstream is not None else 1)
            if both or p._stop.is_set() or p.mode[d] == "cut":
                self.close(reset=p.mode[d] == "cut")


if __name__ == "__main__":
    import unittest
    unittest.main(module="test_proxy")
