"""Hostile and malformed input at the router: partial writes with line
numbers, invalid UTF-8, label limits, gzip (good, corrupt, bomb), bodies over
max_body_bytes, garbage on the socket, a slowloris client, many connections.
Every test ends by checking the router still serves ordinary requests."""

import gzip
import json
import re
import select
import socket
import threading
import time
import unittest

from harness import (LOOPBACK, ClusterTestCase, Model, assert_samples_equal, devops_lines,
                     export_to_dict, http_request, http_status, http_status_of, lp_line,
                     raw_request, selector)

MAX_BODY = 64 * 1024


class BadInputTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=1,
                                        router={"max_body_bytes": "64KiB"})
        cls.port = cls.c.router_port[0]

    def tearDown(self):
        # Whatever a test threw at it, the router keeps serving.
        self.assertEqual(http_status(self.c.router_url() + "/health", timeout=10), 200)
        st, resp = self.c.write("alive,t=%s v=1 1000000000" % self._testMethodName)
        self.assertEqual(st, 204, resp)

    def exported(self, metric):
        return export_to_dict(self.c.export('{__name__="%s"}' % metric))

    def check_partial(self, resp, bad_lines, total_lines=None):
        """400 body: error 'partial write: N of M lines rejected', rejected
        entries with exactly the given 1-based line numbers."""
        self.assertIsInstance(resp, dict, resp)
        m = re.fullmatch(r"partial write: (\d+) of (\d+) lines rejected", resp.get("error", ""))
        self.assertTrue(m, "error field: %r" % resp.get("error"))
        self.assertEqual(int(m.group(1)), len(bad_lines), resp["error"])
        if total_lines is not None:
            self.assertIn(int(m.group(2)), total_lines, resp["error"])
        rej = resp.get("rejected")
        self.assertIsInstance(rej, list)
        self.assertEqual([r["line"] for r in rej], sorted(bad_lines)[:100])
        for r in rej:
            self.assertIsInstance(r.get("reason"), str)
            self.assertTrue(r["reason"].strip(), r)
        return {r["line"]: r["reason"] for r in rej}

    # -- line protocol --------------------------------------------------------

    def test_partial_write_line_numbers(self):
        T = 1700000000000000000
        good = [lp_line("pw", {"h": str(i)}, [("v", i + 0.5)], T + i * 10**6) for i in range(5)]
        body = [
            good[0][0],                                    # 1
            good[1][0],                                    # 2
            "pw,h=x v=tru %d" % T,                         # 3 bad boolean
            "",                                            # 4 blank
            "# comment",                                   # 5
            "pw,h=x v=1 notanumber",                       # 6 bad timestamp
            good[2][0],                                    # 7
            "pw,h=x",                                      # 8 no fields
            "pw,h=1,h=2 v=1 %d" % T,                       # 9 duplicate tag
            "pw,h=x v=1i9 %d" % T,                         # 10 bad integer
            "pw,h=x v=99999999999999999999i %d" % T,       # 11 int out of range
            "pw,=x v=1 %d" % T,                            # 12 empty tag key
            "pw,__name__=x v=1 %d" % T,                    # 13 reserved label
            "pw,h=x v=1e999 %d" % T,                       # 14 float overflow
            "pw,h=x v=1 %d extra" % T,                     # 15 text after timestamp
            good[3][0],                                    # 16
            "pw,h=x v=1,=2 %d" % T,                        # 17 empty field key
            good[4][0],                                    # 18
        ]
        bad = [3, 6, 8, 9, 10, 11, 12, 13, 14, 15, 17]
        st, resp = self.c.write(body)
        self.assertEqual(st, 400, resp)
        reasons = self.check_partial(resp, bad, total_lines=(len(body), len(body) - 2))
        self.assertRegex(reasons[3].lower(), "bool")
        self.assertRegex(reasons[6].lower(), "timestamp")
        self.assertRegex(reasons[9].lower(), "duplicate")
        self.assertRegex(reasons[13], "__name__")
        model = Model()
        model.add_lines(good)
        assert_samples_equal(model.data, self.exported("pw_v"), "valid lines of a partial write")

    def test_more_than_100_bad_lines(self):
        body, bad, model = [], [], Model()
        for i in range(200):
            if i % 4 == 3:
                built = lp_line("many", {"i": str(i)}, [("v", float(i))], 10**18 + i * 10**6)
                body.append(built[0])
                model.add_lines([built])
            else:
                body.append("many,i=%d v=oops" % i)
                bad.append(i + 1)
        st, resp = self.c.write(body)
        self.assertEqual(st, 400)
        self.check_partial(resp, bad, total_lines=(200,))
        self.assertEqual(len(resp["rejected"]), 100)
        assert_samples_equal(model.data, self.exported("many_v"), "good lines among 150 bad")

    def test_invalid_utf8_rejected_per_line(self):
        T = 1700000000000000000
        lines = [
            b"u8,t=ok v=1 %d" % T,                   # 1 good
            b"u8,t=\xff v=2 %d" % T,                 # 2 bad byte in tag value
            b"u8,t=\xc0\xaf v=3 %d" % T,             # 3 overlong encoding
            b"u8,t=\xed\xa0\x80 v=4 %d" % T,         # 4 UTF-16 surrogate
            b"u8,t=ab\xe6\x97 v=5 %d" % T,           # 5 truncated sequence
            b"u8,t=\xf4\x90\x80\x80 v=6 %d" % T,     # 6 beyond U+10FFFF
            b"u8\xfe,t=x v=7 %d" % T,                # 7 measurement
            b"u8,t\xff=x v=8 %d" % T,                # 8 tag key
            b"u8,t=x v\xff=9 %d" % T,                # 9 field key
            "u8,t=日本 v=10 %d" % T,                  # 10 good
        ]
        st, resp = self.c.write(lines)
        self.assertEqual(st, 400, resp)
        reasons = self.check_partial(resp, list(range(2, 10)), total_lines=(10,))
        for n in range(2, 7):
            self.assertRegex(reasons[n], r"(?i)utf-?8", "line %d" % n)
        got = self.exported("u8_v")
        self.assertEqual(set(got), {(("__name__", "u8_v"), ("t", "ok")),
                                    (("__name__", "u8_v"), ("t", "日本"))})

    def test_label_limits(self):
        T = 1700000000000000000
        lines = [
            "lim,t=%s v=1 %d" % ("x" * 4096, T),                                # 1 ok: 4 KiB
            "lim,t=%s v=1 %d" % ("y" * 4097, T),                                # 2 too long
            "lim,%s v=1 %d" % (",".join("k%02d=v" % i for i in range(63)), T),  # 3 ok: 64 labels
            "lim,%s v=1 %d" % (",".join("k%02d=v" % i for i in range(64)), T),  # 4: 65 labels
            "lim,%s=x v=1 %d" % ("k" * 257, T),                                 # 5 long name
            "%s v=1 %d" % ("m" * 300, T),                                       # 6 metric > 256
        ]
        st, resp = self.c.write(lines)
        self.assertEqual(st, 400, resp)
        self.check_partial(resp, [2, 4, 5, 6], total_lines=(6,))
        got = self.exported("lim_v")
        self.assertEqual(len(got), 2)

    # -- gzip -------------------------------------------------------------------

    def test_gzip_body(self):
        built = devops_lines(hosts=5, points=20, seed=11, measurement="gz")
        model = Model()
        model.add_lines(built)
        st, resp = self.c.write([l for l, _ in built[:50]], gzip=True)
        self.assertEqual(st, 204, resp)
        st, resp = self.c.write([l for l, _ in built[50:]], gzip=True, path="/api/v2/write",
                                precision="ns")
        self.assertEqual(st, 204, resp)
        got = export_to_dict(self.c.export('{__name__=~"gz_.*"}'))
        assert_samples_equal(model.data, got, "gzip writes")

    def test_corrupt_gzip(self):
        good = gzip.compress(b"cg,a=b v=1 1700000000000000000\n" * 50)
        bodies = {
            "garbage": b"this is not gzip at all",
            "bad magic": b"\x1f\x8c" + good[2:],
            "truncated": good[:len(good) // 2],
            "flipped crc": good[:-8] + bytes([good[-8] ^ 0xff]) + good[-7:],
            "empty": b"",
        }
        for name, body in bodies.items():
            with self.subTest(body=name):
                st, _, data = http_request(self.c.router_url() + "/write", "POST", body,
                                           {"Content-Encoding": "gzip"})
                if name == "empty" and st == 204:
                    continue  # an empty body may be read as "no lines"
                self.assertEqual(st, 400, data[:300])
                self.assertTrue(json.loads(data).get("error"), data[:300])
        self.assertEqual(self.c.export('{__name__="cg_v"}'), [],
                         "something from a rejected gzip body was written")

    # -- size limit ---------------------------------------------------------------

    def post_raw(self, body, headers=b""):
        """POST with Content-Length; send the body only if the server has not
        answered after the headers (polled, bounded); tolerate an early close."""
        s = socket.create_connection((LOOPBACK, self.port), timeout=15)
        try:
            s.sendall(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s"
                      b"Connection: close\r\n\r\n" % (len(body), headers))
            early = select.select([s], [], [], 1.0)[0]
            if not early:
                try:
                    for i in range(0, len(body), 16384):
                        s.sendall(body[i:i + 16384])
                        if select.select([s], [], [], 0)[0]:
                            break
                except (BrokenPipeError, ConnectionResetError):
                    pass
            got = b""
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                got += chunk
            return got
        finally:
            s.close()

    def test_body_over_max_body_bytes(self):
        line = b"big,host=h%06d v=1 1700000000000000000\n"
        body = b"".join(line % i for i in range(3000))  # ~120 KiB
        self.assertGreater(len(body), MAX_BODY)
        raw = self.post_raw(body)
        self.assertEqual(http_status_of(raw), 413, raw[:300])
        payload = raw.split(b"\r\n\r\n", 1)[1]
        self.assertTrue(json.loads(payload).get("error"), payload)
        # Compressed small, decoded over the limit (a gzip bomb): 413 too.
        st, _, data = http_request(self.c.router_url() + "/write", "POST", gzip.compress(body),
                                   {"Content-Encoding": "gzip"})
        self.assertEqual(st, 413, data[:300])
        self.assertTrue(json.loads(data).get("error"))
        self.assertEqual(self.c.export('{__name__="big_v"}'), [],
                         "a body over the limit was partly written")
        # Just under the limit is fine.
        ok = b"".join(line % i for i in range(MAX_BODY // len(line % 0) - 1))
        self.assertLessEqual(len(ok), MAX_BODY)
        st, _, data = http_request(self.c.router_url() + "/write", "POST", ok)
        self.assertEqual(st, 204, data[:300])

    # -- the socket ---------------------------------------------------------------

    def test_garbage_on_the_socket(self):
        payloads = [
            b"\x00\x01\x02\x03garbage\r\n\r\n",
            bytes(range(256)) * 16,
            b"GET /health HTTP/9.9\r\n\r\n",
            b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 200000 + b"\r\n\r\n",
            b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\n\r\n",
            b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n",
        ]
        for p in payloads:
            with self.subTest(payload=p[:40]):
                got = raw_request(self.port, p, read_timeout=10, shut_wr=True)
                self.assertIsNotNone(got, "server neither answered nor closed in 10 s")
                if got:
                    st = http_status_of(got)
                    self.assertIsNotNone(st, got[:200])
                    self.assertTrue(400 <= st < 600 and st != 500, got[:200])
                self.assertEqual(http_status(self.c.router_url() + "/health", 10), 200)

    def test_slowloris_does_not_block_others(self):
        request = b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Pad: " + b"p" * 64 + b"\r\n\r\n"
        n_slow = 6
        sent = [0] * n_slow
        stop = threading.Event()

        def trickle(k):
            s = socket.create_connection((LOOPBACK, self.port), timeout=5)
            try:
                for b in request[:-1]:  # never completes the request
                    s.sendall(bytes([b]))
                    sent[k] += 1
                    if stop.wait(1.0):
                        return
            except OSError:
                sent[k] = -sent[k] - 1  # the server closed it: allowed, noted
            finally:
                s.close()

        threads = [threading.Thread(target=trickle, args=(k,), daemon=True) for k in range(n_slow)]
        for t in threads:
            t.start()
        try:
            self.c.wait_until(lambda: all(x >= 2 for x in sent), 20, "slow clients started")
            model = Model()
            for i in range(20):
                built = lp_line("slow", {"i": str(i)}, [("v", float(i))], 10**18)
                st, resp = self.c.write(built[0], timeout=10)
                self.assertEqual(st, 204, resp)
                model.add_lines([built])
                self.assertEqual(http_status(self.c.router_url() + "/health", 10), 200)
            assert_samples_equal(model.data, self.exported("slow_v"), "writes beside slowloris")
            # All of that happened while the slow clients were still trickling.
            self.assertTrue(all(t.is_alive() for t in threads), "a slow client finished early")
            self.assertTrue(all(x > 0 for x in sent), "slow clients were cut early: %s" % sent)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertFalse(any(t.is_alive() for t in threads))

    def test_many_concurrent_connections(self):
        idle = []
        try:
            for _ in range(200):
                idle.append(socket.create_connection((LOOPBACK, self.port), timeout=10))
            results, model = [], Model()
            lock = threading.Lock()

            def client(k):
                for j in range(10):
                    built = lp_line("conc", {"k": str(k)}, [("v", float(j))], 10**18 + j * 10**6)
                    try:
                        st, _ = self.c.write(built[0], timeout=30)
                    except OSError as e:
                        st = repr(e)
                    with lock:
                        results.append(st)
                        model.add_lines([built])

            threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(24)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            self.assertFalse(any(t.is_alive() for t in threads), "clients hung")
            self.assertEqual(results, [204] * 240)
            assert_samples_equal(model.data, self.exported("conc_v"), "concurrent writes")
        finally:
            for s in idle:
                s.close()
        # One persistent connection, many requests.
        import http.client
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
        try:
            for i in range(50):
                conn.request("POST", "/write", body=b"ka,i=%d v=1 1000000000" % i)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 204)
        finally:
            conn.close()
        self.assertEqual(len(self.c.export('{__name__="ka_v"}')), 50)


if __name__ == "__main__":
    unittest.main()
