#!/usr/bin/python3
"""Tests of scripts/live_check.sh that need no internet: its no-token path,
its field diff on canned Metrica bodies, and its whole live path against the
Metrica simulator standing in for Metrica (UPLOADWATCH_SIM_URL, set by
scripts/lib/client_tests.sh; the demo token stands in for a user's).

    /usr/bin/python3 -m unittest -v client/testing/test_live_check.py
"""

import json
import os
import subprocess
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "live_check.sh")
SIM_URL = os.environ.get("UPLOADWATCH_SIM_URL", "")
DEMO_TOKEN = os.environ.get("UPLOADWATCH_DEMO_TOKEN", "demo-token")

# Metrica's documented uploading, every field we map.
DOCUMENTED = {
    "id": 12, "create_time": "2022-12-29T18:02:01Z", "source_quantity": 1500,
    "line_quantity": 1480, "comment": "CRM export", "client_id_type": "CLIENT_ID",
    "status": "PROCESSED", "type": "BASIC", "goal_not_found_quantity": 2,
    "user_not_found_quantity": 86, "linked_quantity": 1392,
    "static_calls_quantity": 0, "dynamic_calls_quantity": 0,
}


def run(args, env=None, timeout=120):
    full = {k: v for k, v in os.environ.items() if k != "METRIKA_OAUTH_TOKEN"}
    full.update(env or {})
    return subprocess.run([SCRIPT, *args], env=full, capture_output=True, text=True,
                          timeout=timeout)


class LiveCheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def body(self, name, obj):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        return path

    def test_without_a_token_it_says_so_and_exits_0(self):
        r = run(["2215573"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("METRIKA_OAUTH_TOKEN is not set", r.stdout)

    def test_with_a_token_but_no_counter_it_is_a_usage_error(self):
        r = run([], env={"METRIKA_OAUTH_TOKEN": "x", "METRIKA_COUNTER_ID": ""})
        self.assertEqual(r.returncode, 64)
        self.assertIn("a counter id is needed", r.stderr)
        self.assertNotIn("x\n", r.stdout + r.stderr)

    def test_every_documented_field_is_mapped(self):
        r = run(["--field-diff", self.body("get.json", {"uploading": DOCUMENTED}),
                 self.body("list.json", {"uploadings": [DOCUMENTED, {"id": 13, "status": "matched"}]})])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("3 uploading(s) in 2 body(ies), 0 unmapped", r.stdout)

    def test_unknown_fields_values_and_envelope_keys_are_reported(self):
        odd = dict(DOCUMENTED, status="QUEUED", client_id_type="PHONE", conversions_quantity=7)
        r = run(["--field-diff", self.body("list.json", {"uploadings": [odd, odd], "total": 2})])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        lines = [l for l in r.stdout.splitlines() if "unmapped:" in l]
        self.assertCountEqual(lines, [
            "live_check: unmapped: uploading: status value 'QUEUED' (kept in status_raw)",
            "live_check: unmapped: uploading: client_id_type value 'PHONE' (kept in client_id_type_raw)",
            "live_check: unmapped: uploading: field 'conversions_quantity' (example 7)",
            "live_check: unmapped: envelope: key 'total' (example 2)",
        ])  # each once, though two uploadings carry them
        self.assertIn("2 uploading(s) in 1 body(ies), 4 unmapped", r.stdout)

    def test_our_raw_fields_are_not_metricas(self):
        r = run(["--field-diff", self.body("get.json", {"uploading": dict(DOCUMENTED, status_raw="X")})])
        self.assertEqual(r.returncode, 2)
        self.assertIn("field 'status_raw'", r.stdout)

    def test_a_body_that_is_not_json_is_an_error(self):
        path = os.path.join(self.dir.name, "bad.json")
        with open(path, "w") as f:
            f.write("<html>")
        r = run(["--field-diff", path])
        self.assertNotIn(r.returncode, (0, 2))
        self.assertIn("cannot read", r.stderr)

    @unittest.skipUnless(SIM_URL, "UPLOADWATCH_SIM_URL is not set")
    def test_the_live_path_against_the_simulator(self):
        r = run(["2215573"], env={"METRIKA_OAUTH_TOKEN": DEMO_TOKEN, "METRIKA_API_URL": SIM_URL,
                                  "UPLOADWATCH_LIVE_WATCH_SECONDS": "3"}, timeout=200)
        out = r.stdout
        for check in ("ok:   Metrica lists BASIC uploadings", "ok:   Metrica gets uploading",
                      "ok:   our server starts", "ok:   uploadwatch list 2215573",
                      "ok:   uploadwatch get 2215573", "ok:   our get keeps every field Metrica sent",
                      "ok:   uploadwatch watch 2215573 "):
            self.assertIn(check, out, out + r.stderr)
        self.assertNotIn("FAIL", out)
        self.assertIn("unmapped", out)  # the diff ran
        self.assertIn(r.returncode, (0, 2), out + r.stderr)
        self.assertNotIn(DEMO_TOKEN, out + r.stderr)


if __name__ == "__main__":
    unittest.main()
