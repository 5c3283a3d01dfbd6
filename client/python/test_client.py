#!/usr/bin/python3
"""Tests of the Python client against a running uploadwatch server on the
Metrica simulator's demo world (scripts/lib/client_tests.sh starts one).

    UPLOADWATCH_ADDR=127.0.0.1:PORT /usr/bin/python3 client/python/test_client.py -v

The server must have its own token (the demo one); these tests also send
`authorization: OAuth demo-token` explicitly, and a wrong token.
"""

import json
import io
import os
import sys
import unittest
from contextlib import redirect_stderr, redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import uploadwatch_client as uw  # noqa: E402
from uploadwatch_client import pb  # noqa: E402

ADDR = os.environ.get("UPLOADWATCH_ADDR", "")
DEMO_TOKEN = os.environ.get("UPLOADWATCH_DEMO_TOKEN", "demo-token")
COUNTER = uw.DEMO_COUNTER
SETTLED_IDS = [19, 18, 17, 16, 15, 14, 13, 12]
# Live demo uploads have ids from 101 up; the simulator starts a new one
# every 30 s (3 s at --demo_speed=10), each done 90 s (9 s) after it starts.
LIVE_FROM_ID = 100
WATCH_DEADLINE_S = float(os.environ.get("UPLOADWATCH_WATCH_DEADLINE", "170"))


def pick_moving_uploading(client):
    """The moving demo uploading that should reach its terminal status first:
    of those not terminal now, the one furthest along. The List goes to
    Metrica, so it also refreshes the server's view of them."""
    forced = os.environ.get("UPLOADWATCH_WATCH_ID")
    if forced:
        return int(forced)
    moving = [u for u in client.list(COUNTER) if u.id > LIVE_FROM_ID]
    under_way = [u for u in moving if u.status not in uw.TERMINAL_STATUSES]
    if not under_way:
        raise AssertionError(f"no moving uploading under way: {moving}")
    return max(under_way, key=lambda u: u.status).id


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not ADDR:
            raise unittest.SkipTest("UPLOADWATCH_ADDR is not set")
        cls.client = uw.Client(ADDR)  # relies on the server's token

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def assertRpcError(self, code, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as ctx:
            result = fn(*args, **kwargs)
            if hasattr(result, "__next__"):  # a stream: errors come on reading
                list(result)
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        return ctx.exception

    def test_list(self):
        uploadings = self.client.list(COUNTER)
        ids = [u.id for u in uploadings]
        # Metrica's order, newest (highest id) first; BASIC by default.
        live = [i for i in ids if i > LIVE_FROM_ID]
        self.assertGreaterEqual(len(live), 3)
        self.assertEqual(live, sorted(live, reverse=True))
        self.assertEqual(ids, live + [19, 18, 17, 16, 13, 12])
        self.assertTrue(all(u.type == pb.Uploading.BASIC for u in uploadings))
        page = self.client.list(COUNTER, limit=2, offset=1)
        # A new live upload may start between the calls: compare with both.
        later = [u.id for u in self.client.list(COUNTER)]
        self.assertIn([u.id for u in page], (ids[1:3], later[1:3]))
        calls = self.client.list(COUNTER, type=pb.Uploading.CALLS)
        self.assertEqual([(u.id, u.static_calls_quantity) for u in calls], [(14, 204)])

    def test_get_fields(self):
        # This call carries the token itself, as a client of a shared server would.
        with uw.Client(ADDR, token=DEMO_TOKEN) as client:
            u = client.get(COUNTER, 12)
        self.assertEqual(u.id, 12)
        self.assertEqual(u.create_time.ToJsonString(), "2022-12-29T18:02:01Z")
        self.assertEqual(u.comment, "CRM export, December")
        self.assertEqual(u.client_id_type, pb.Uploading.CLIENT_ID)
        self.assertEqual(u.type, pb.Uploading.BASIC)
        self.assertEqual(u.status, pb.Uploading.PROCESSED)
        self.assertEqual((u.source_quantity, u.line_quantity, u.linked_quantity,
                          u.user_not_found_quantity, u.goal_not_found_quantity),
                         (1500, 1480, 1392, 86, 2))
        self.assertEqual((u.status_raw, u.client_id_type_raw, u.type_raw), ("", "", ""))
        self.assertEqual(json.loads(uw.to_json(u))["status"], "PROCESSED")

    def test_watch_follows_to_terminal(self):
        for _ in range(2):
            uploading_id = pick_moving_uploading(self.client)
            call = self.client.watch(COUNTER, uploading_id, timeout=WATCH_DEADLINE_S)
            messages = list(call)  # raises on any error, DEADLINE_EXCEEDED included
            self.assertEqual(call.code(), grpc.StatusCode.OK)
            self.assertTrue(messages)
            if len(messages) > 1:
                break  # else it ended between the List and the Watch: pick again
        versions = [m.version for m in messages]
        self.assertTrue(all(a < b for a, b in zip(versions, versions[1:])), versions)
        self.assertGreaterEqual(versions[0], 1)
        for before, after in zip(messages, messages[1:]):
            self.assertNotEqual(before.uploading, after.uploading, "a duplicate message")
            self.assertGreaterEqual(after.observe_time.ToNanoseconds(),
                                    before.observe_time.ToNanoseconds())
        for m in messages:
            self.assertEqual(m.uploading.id, uploading_id)
            self.assertGreaterEqual(m.check_time.ToNanoseconds(), m.observe_time.ToNanoseconds())
        for m in messages[:-1]:
            self.assertFalse(m.terminal)
            self.assertNotIn(m.uploading.status, uw.TERMINAL_STATUSES)
        last = messages[-1]
        self.assertTrue(last.terminal)
        self.assertIn(last.uploading.status, uw.TERMINAL_STATUSES)
        self.assertGreater(len(messages), 1, f"uploading {uploading_id} did not move")

    def test_watch_terminal_uploading_gives_one_message(self):
        call = self.client.watch(COUNTER, 13, timeout=30)
        messages = list(call)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertEqual(len(messages), 1)
        self.assertTrue(messages[0].terminal)
        self.assertEqual(messages[0].uploading.status, pb.Uploading.LINKAGE_FAILURE)

    def test_invalid_argument(self):
        e = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.client.get, 0, 12)
        self.assertIn("counter_id", e.details())
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.client.watch, 0, 12,
                            timeout=10)
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.client.list, COUNTER,
                            limit=10001)

    def test_wrong_token_is_unauthenticated(self):
        with uw.Client(ADDR, token="nope") as client:
            self.assertRpcError(grpc.StatusCode.UNAUTHENTICATED, client.get, COUNTER, 12)
            self.assertRpcError(grpc.StatusCode.UNAUTHENTICATED, client.watch, COUNTER, 12,
                                timeout=10)

    def test_not_found_carries_error_info(self):
        e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.client.get, COUNTER, 999999)
        status = uw.rich_status(e)
        self.assertIsNotNone(status, "no grpc-status-details-bin trailer")
        self.assertEqual(status.code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertEqual(status.message, e.details())
        info = uw.error_info(e)
        self.assertIsNotNone(info, "no google.rpc.ErrorInfo detail")
        self.assertEqual(info.reason, "NOT_FOUND")
        self.assertTrue(info.domain)

    def test_cli(self):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            rc = uw.main(["--server", ADDR, "--json", "get", str(COUNTER), "12"])
        self.assertEqual(rc, 0, err.getvalue())
        self.assertEqual(json.loads(out.getvalue())["id"], "12")  # int64: a JSON string
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            rc = uw.main(["--server", ADDR, "watch", str(COUNTER), "15"])
        self.assertEqual(rc, 0, err.getvalue())
        self.assertIn("PROCESSED", out.getvalue())
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            rc = uw.main(["--server", ADDR, "get", str(COUNTER), "999999"])
        self.assertEqual(rc, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertIn("NOT_FOUND", err.getvalue())


if __name__ == "__main__":
    unittest.main()
