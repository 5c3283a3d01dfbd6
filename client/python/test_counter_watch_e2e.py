#!/usr/bin/python3
"""END-TO-END cases of the Python counter watch against the real server on
the simulator's demo world. NOT YET RUNNABLE: the server side of
WatchUploadings is on another branch. Switched on by
UPLOADWATCH_E2E_COUNTER_WATCH=1 (scripts/lib/client_tests.sh then runs this
module too); otherwise it defines no test at all, so nothing is skipped.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import uploadwatch_client as uw  # noqa: E402
from uploadwatch_client import pb  # noqa: E402

ADDR = os.environ.get("UPLOADWATCH_ADDR", "")

if os.environ.get("UPLOADWATCH_E2E_COUNTER_WATCH") == "1":

    class CounterWatchE2ETest(unittest.TestCase):
        def test_snapshot_then_live_added_and_modified(self):
            with uw.Client(ADDR) as client:
                listed = {u.id for u in client.list(uw.DEMO_COUNTER)}
                view = uw.CounterView()
                snapshot, new, modified = None, set(), set()
                for m in client.watch_counter(uw.DEMO_COUNTER, timeout=60):
                    for e in m.events:
                        if snapshot is None:
                            self.assertEqual(e.type, pb.UploadingEvent.ADDED)
                        elif e.type == pb.UploadingEvent.ADDED:
                            self.assertNotIn(e.uploading.id, view.uploadings)
                            new.add(e.uploading.id)
                        else:
                            self.assertEqual(e.type, pb.UploadingEvent.MODIFIED)
                            modified.add(e.uploading.id)
                    view.apply(m)
                    self.assertTrue(m.resume_token)
                    if m.synced and snapshot is None:
                        snapshot = set(view.uploadings)
                        # A live upload may start between the List and the watch.
                        self.assertLessEqual(len(listed ^ snapshot), 2, (listed, snapshot))
                    if new and modified:
                        break
            self.assertTrue(new and modified)

        def test_resume_from_a_token_sends_no_reset(self):
            with uw.Client(ADDR) as client:
                token = None
                for m in client.watch_counter(uw.DEMO_COUNTER, timeout=30):
                    if m.synced:
                        token = m.resume_token
                        break
                first = next(iter(client.watch_counter(uw.DEMO_COUNTER, resume_token=token,
                                                       timeout=30)))
                self.assertFalse(first.reset)

        def test_a_malformed_token_is_invalid_argument(self):
            with uw.Client(ADDR) as client:
                with self.assertRaises(grpc.RpcError) as ctx:
                    list(client.watch_counter(uw.DEMO_COUNTER, resume_token="not a token",
                                              timeout=10))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    unittest.main()
