#!/usr/bin/python3
"""Tests of the Python client's counter watch (resume, reset) against a real
gRPC server on loopback that answers WatchUploadings from scripts, and of its
TLS options against the real uploadwatch server serving TLS and mTLS
(scripts/lib/client_tests.sh starts those and sets UPLOADWATCH_TLS_ADDR,
UPLOADWATCH_MTLS_ADDR and UPLOADWATCH_CERTS).

    /usr/bin/python3 -m unittest -v test_scripted
"""

import io
import os
import sys
import threading
import unittest
from concurrent import futures
from contextlib import redirect_stderr, redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import uploadwatch_client as uw  # noqa: E402
from uploadwatch_client import pb, pb_grpc  # noqa: E402

ROTATED = (grpc.StatusCode.UNAVAILABLE, "maximum stream lifetime")
HANG = object()


def message(token, events=(), synced=False, reset=False):
    """A WatchUploadingsResponse; events are (type, id, status) triples."""
    return pb.WatchUploadingsResponse(
        events=[pb.UploadingEvent(type=t, uploading=pb.Uploading(id=i, status=s))
                for t, i, s in events],
        synced=synced, reset=reset, resume_token=token)


ADDED, MODIFIED = pb.UploadingEvent.ADDED, pb.UploadingEvent.MODIFIED


class ScriptedService(pb_grpc.UploadingServiceServicer):
    """Answers the n-th WatchUploadings call with scripts[n]: its messages,
    then its (code, details), or OK when that is None, or HANG: the stream
    stays open until the client leaves."""

    def __init__(self):
        self.scripts = []
        self.requests = []
        self._lock = threading.Lock()

    def WatchUploadings(self, request, context):
        with self._lock:
            n = len(self.requests)
            self.requests.append(pb.WatchUploadingsRequest.FromString(request.SerializeToString()))
        if n >= len(self.scripts):
            context.abort(grpc.StatusCode.INTERNAL, "no script left")
        messages, end = self.scripts[n]
        for m in messages:
            yield m
        if end is HANG:
            left = threading.Event()
            context.add_callback(left.set)
            left.wait()
        elif end is not None:
            context.abort(*end)


class ScriptedServerTest(unittest.TestCase):
    def setUp(self):
        self.service = ScriptedService()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_UploadingServiceServicer_to_server(self.service, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.addr = f"127.0.0.1:{port}"
        self.client = uw.Client(self.addr, token="tok")

    def tearDown(self):
        self.client.close()
        self.server.stop(None)

    def watch(self, **kwargs):
        """Every message of a counter watch of counter 1, and its end."""
        got = []
        with self.assertRaises(grpc.RpcError) as ctx:
            for m in self.client.watch_counter(1, **kwargs):
                got.append(m)
        return got, ctx.exception

    def test_resumes_with_the_last_token_on_unavailable(self):
        self.service.scripts = [
            ([message("t1", [(ADDED, 5, pb.Uploading.PREPARED)]),
              message("t2", [(ADDED, 6, pb.Uploading.MATCHED)], synced=True),
              message("t3")], ROTATED),  # a bookmark's token counts too
            ([message("t4", synced=True)], ROTATED),
            ([message("t5", [(MODIFIED, 5, pb.Uploading.UPLOADED)], synced=True)],
             (grpc.StatusCode.PERMISSION_DENIED, "access revoked")),
        ]
        got, end = self.watch(type=pb.Uploading.CALLS)
        self.assertEqual(end.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual([m.resume_token for m in got], ["t1", "t2", "t3", "t4", "t5"])
        self.assertEqual([r.resume_token for r in self.service.requests], ["", "t3", "t4"])
        for r in self.service.requests:
            self.assertEqual((r.counter_id, r.type), (1, pb.Uploading.CALLS))

    def test_starts_from_the_callers_token(self):
        self.service.scripts = [([], (grpc.StatusCode.NOT_FOUND, "no counter 1"))]
        got, end = self.watch(resume_token="saved")
        self.assertEqual(end.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(got, [])
        self.assertEqual([r.resume_token for r in self.service.requests], ["saved"])

    def test_a_resume_that_fails_before_an_answer_ends_the_watch(self):
        self.service.scripts = [
            ([message("t1", synced=True)], ROTATED),
            ([], (grpc.StatusCode.UNAVAILABLE, "shutting down")),
        ]
        got, end = self.watch()
        self.assertEqual((end.code(), end.details()),
                         (grpc.StatusCode.UNAVAILABLE, "shutting down"))
        self.assertEqual(len(got), 1)
        self.assertEqual(len(self.service.requests), 2)

    def test_unavailable_before_any_answer_is_not_retried(self):
        self.service.scripts = [([], (grpc.StatusCode.UNAVAILABLE, "shutting down"))]
        got, end = self.watch()
        self.assertEqual(end.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(len(self.service.requests), 1)

    def test_a_stream_ending_ok_breaks_the_contract(self):
        self.service.scripts = [([message("t1", synced=True)], None)]
        with self.assertRaisesRegex(RuntimeError, "never ends by itself"):
            list(self.client.watch_counter(1))

    def test_the_timeout_bounds_the_whole_watch(self):
        self.service.scripts = [([message("t1", synced=True)], ROTATED),
                                ([message("t2")], HANG)]
        got, end = self.watch(timeout=0.3)
        self.assertEqual(end.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual([m.resume_token for m in got], ["t1", "t2"])

    def test_the_view_drops_what_it_held_on_a_reset(self):
        self.service.scripts = [
            ([message("t1", [(ADDED, 5, pb.Uploading.PREPARED),
                             (ADDED, 6, pb.Uploading.PROCESSED)], synced=True),
              message("t2", [(MODIFIED, 5, pb.Uploading.UPLOADED)])], ROTATED),
            ([message("t3", reset=True),
              message("t4", [(ADDED, 7, pb.Uploading.PREPARED)], synced=True)],
             (grpc.StatusCode.PERMISSION_DENIED, "revoked")),
        ]
        view = uw.CounterView()
        states = []
        with self.assertRaises(grpc.RpcError):
            for m in self.client.watch_counter(1):
                view.apply(m)
                states.append((view.synced, [(u.id, u.status) for u in view.newest_first()]))
        self.assertEqual(states, [
            (True, [(6, pb.Uploading.PROCESSED), (5, pb.Uploading.PREPARED)]),
            (True, [(6, pb.Uploading.PROCESSED), (5, pb.Uploading.UPLOADED)]),
            (False, []),
            (True, [(7, pb.Uploading.PREPARED)]),
        ])

    def test_cli_prints_one_line_per_event(self):
        self.service.scripts = [
            ([message("t1", [(ADDED, 5, pb.Uploading.PREPARED)], synced=True)], ROTATED),
            ([message("t2", reset=True)], (grpc.StatusCode.PERMISSION_DENIED, "revoked")),
        ]
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            rc = uw.main(["--server", self.addr, "watch", "1"])
        self.assertEqual(rc, grpc.StatusCode.PERMISSION_DENIED.value[0])
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertEqual(lines[0].split()[:3], ["ADDED", "5", "PREPARED"], lines[0])
        self.assertEqual(lines[1:], ["SYNCED", "RESET: dropping what was held"])
        self.assertIn("PERMISSION_DENIED", err.getvalue())


CERTS = os.environ.get("UPLOADWATCH_CERTS", "")
TLS_ADDR = os.environ.get("UPLOADWATCH_TLS_ADDR", "")
MTLS_ADDR = os.environ.get("UPLOADWATCH_MTLS_ADDR", "")


def cert(name):
    return os.path.join(CERTS, name)


class TlsTest(unittest.TestCase):
    """The real server on the simulator's demo world, serving TLS (TLS_ADDR)
    and mutual TLS (MTLS_ADDR) with a test CA's certificates."""

    def setUp(self):
        if not (CERTS and TLS_ADDR and MTLS_ADDR):
            self.skipTest("UPLOADWATCH_CERTS/UPLOADWATCH_TLS_ADDR/UPLOADWATCH_MTLS_ADDR not set")

    def get_code(self, addr, **tls):
        try:
            with uw.Client(addr, **tls) as client:
                self.assertEqual(client.get(uw.DEMO_COUNTER, 12, timeout=5).id, 12)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def test_tls_with_the_ca_file(self):
        self.assertEqual(self.get_code(TLS_ADDR, ca_file=cert("ca.pem")), grpc.StatusCode.OK)

    def test_tls_refuses_an_untrusted_server_and_plaintext(self):
        self.assertEqual(self.get_code(TLS_ADDR, ca_file=cert("stranger.pem")),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.get_code(TLS_ADDR), grpc.StatusCode.UNAVAILABLE)

    def test_mtls_needs_a_client_certificate_from_the_ca(self):
        self.assertEqual(self.get_code(MTLS_ADDR, ca_file=cert("ca.pem"),
                                       cert_file=cert("client.pem"), key_file=cert("client.key")),
                         grpc.StatusCode.OK)
        self.assertEqual(self.get_code(MTLS_ADDR, ca_file=cert("ca.pem")),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.get_code(MTLS_ADDR, ca_file=cert("ca.pem"),
                                       cert_file=cert("stranger.pem"),
                                       key_file=cert("stranger.key")),
                         grpc.StatusCode.UNAVAILABLE)

    def test_half_a_client_certificate_or_a_missing_file_is_refused(self):
        with self.assertRaises(ValueError):
            uw.Client(MTLS_ADDR, cert_file=cert("client.pem"))
        with self.assertRaises(OSError):
            uw.Client(TLS_ADDR, ca_file=cert("nope.pem"))

    def test_cli_tls_flags(self):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            rc = uw.main(["--server", MTLS_ADDR, "--ca_file", cert("ca.pem"),
                          "--cert_file", cert("client.pem"), "--key_file", cert("client.key"),
                          "get", str(uw.DEMO_COUNTER), "12"])
        self.assertEqual(rc, 0, err.getvalue())
        self.assertIn("PROCESSED", out.getvalue())


if __name__ == "__main__":
    unittest.main()
