// The dashboard's CounterFeed against an in-memory fake of the generated
// client (no server, no timers): snapshot and changes, resume with the last
// resume_token after a dropped stream, reset, permanent errors, and the
// fallback to polling ListUploadings on a server without WatchUploadings.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  UploadingSchema,
  UploadingEventSchema,
  UploadingEvent_Type,
  Uploading_Status as S,
  WatchUploadingsResponseSchema,
} from "../gen/metrika/offline_conversions/v1/uploading_service_pb.js";
import { CounterFeed } from "../src/feed.js";

const up = (id, status) => create(UploadingSchema, { id: BigInt(id), status });
const event = (type, u, extra) => create(UploadingEventSchema, { type, uploading: u, ...extra });
const added = (u, extra = {}) => event(UploadingEvent_Type.ADDED, u, extra);
const modified = (u, extra = {}) => event(UploadingEvent_Type.MODIFIED, u, extra);
const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const ts = (s) => timestampFromDate(new Date(T0 + s * 1000));
const seen = (status, s) => ({ status, observeTime: ts(s) });

// A fake client whose watchUploadings plays `scripts[i]` on the i-th call:
// a list of messages, optionally ending with an error to throw.
function fakeClient(scripts, lists = []) {
  const calls = [];
  return {
    calls,
    watchUploadings(request) {
      calls.push({ ...request });
      const script = scripts[calls.length - 1] ?? { messages: [], hang: true };
      return (async function* () {
        for (const m of script.messages) yield create(WatchUploadingsResponseSchema, m);
        if (script.error) throw script.error;
        await new Promise(() => {});  // live: never ends by itself
      })();
    },
    async listUploadings() {
      calls.push({ list: true });
      const next = lists.shift();
      if (next instanceof Error) throw next;
      return { uploadings: next ?? [] };
    },
  };
}

function recorder() {
  const r = { states: [], errors: [], snapshots: [] };
  r.on = {
    change: (entries) => r.snapshots.push(new Map([...entries].map(([k, e]) => [k, S[e.uploading.status]]))),
    connection: (state) => r.states.push(state),
    error: (e) => r.errors.push(e && ConnectError.from(e).code),
    checked: () => {},
  };
  return r;
}

// A sleep that takes no time but lets the test's own checks run.
const tick = () => new Promise((r) => setImmediate(r));
const until = async (cond) => { for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r)); };

describe("CounterFeed", () => {
  it("applies the snapshot, goes live at synced, then applies changes", async () => {
    const client = fakeClient([{ messages: [
      { events: [added(up(12, S.PROCESSED)), added(up(101, S.PREPARED))], synced: true, resumeToken: "t1" },
      { events: [modified(up(101, S.UPLOADED))], resumeToken: "t2" },
    ] }]);
    const r = recorder();
    const feed = new CounterFeed(client, 2215573, r.on, { sleep: tick });
    feed.start();
    await until(() => r.snapshots.length >= 2);
    feed.stop();
    assert.deepEqual([...r.snapshots[0]], [["12", "PROCESSED"], ["101", "PREPARED"]]);
    assert.deepEqual([...r.snapshots[1]], [["12", "PROCESSED"], ["101", "UPLOADED"]]);
    assert.equal(r.states.at(-1), "live");
    assert.deepEqual(feed.entries.get("101").history.map((h) => S[h.status]), ["PREPARED", "UPLOADED"]);
  });

  it("keeps the server's status timeline and when the server last confirmed each state", async () => {
    const client = fakeClient([{ messages: [
      { events: [added(up(101, S.UPLOADED), { observeTime: ts(5), checkTime: ts(20),
                                               statusHistory: [seen(S.PREPARED, 0), seen(S.UPLOADED, 5)] }),
                 added(up(102, S.PROCESSED), { observeTime: ts(1), checkTime: ts(20),
                                               statusHistory: [seen(S.PROCESSED, 1)] })],
        synced: true, resumeToken: "t1", checkTime: ts(20) },
      { events: [modified(up(101, S.MATCHED), { observeTime: ts(50), checkTime: ts(50),
                                                 statusHistory: [seen(S.PREPARED, 0), seen(S.UPLOADED, 5),
                                                                 seen(S.MATCHED, 50)] })],
        resumeToken: "t2", checkTime: ts(50) },
      { events: [], resumeToken: "t3", checkTime: ts(110) },  // a bookmark
    ] }]);
    const r = recorder();
    const checked = [];
    r.on.checked = (at) => checked.push(at.getTime() - T0);
    const feed = new CounterFeed(client, 2215573, r.on, { sleep: tick });
    feed.start();
    await until(() => r.snapshots.length >= 3);
    feed.stop();
    const e = feed.entries.get("101");
    assert.equal(e.historyFrom, "server");
    assert.deepEqual(e.history.map((h) => [S[h.status], h.at.getTime() - T0]),
                     [["PREPARED", 0], ["UPLOADED", 5000], ["MATCHED", 50000]]);
    // The bookmark's check_time moves every row on, and re-renders.
    assert.equal(e.checkedAt.getTime() - T0, 110000);
    assert.equal(feed.entries.get("102").checkedAt.getTime() - T0, 110000);
    assert.deepEqual(checked, [20000, 50000, 110000]);
  });

  it("a server that sends no history leaves the timeline to what the page saw", async () => {
    const client = fakeClient([{ messages: [
      { events: [added(up(7, S.PREPARED), { observeTime: ts(3) })], synced: true, resumeToken: "t1" },
      { events: [modified(up(7, S.EXPORTED), { observeTime: ts(9) })], resumeToken: "t2" },
    ] }]);
    const r = recorder();
    const feed = new CounterFeed(client, 1, r.on, { sleep: tick });
    feed.start();
    await until(() => r.snapshots.length >= 2);
    feed.stop();
    const e = feed.entries.get("7");
    assert.equal(e.historyFrom, "page");
    assert.deepEqual(e.history.map((h) => [S[h.status], h.at.getTime() - T0]), [["PREPARED", 3000], ["EXPORTED", 9000]]);
    assert.equal(e.checkedAt.getTime() - T0, 9000);  // no check_time: the observation's
  });

  it("resumes with the last resume_token after a dropped stream", async () => {
    const client = fakeClient([
      { messages: [{ events: [added(up(101, S.PREPARED))], synced: true, resumeToken: "t1" },
                   { events: [], resumeToken: "t2" }],
        error: new ConnectError("server going away; re-watch", Code.Unavailable) },
      { messages: [{ events: [modified(up(101, S.MATCHED))], synced: true, resumeToken: "t3" }] },
    ]);
    const r = recorder();
    const waits = [];
    const feed = new CounterFeed(client, 2215573, r.on, { sleep: (ms) => { waits.push(ms); return tick(); } });
    feed.start();
    await until(() => client.calls.length >= 2 && r.snapshots.length >= 2);
    feed.stop();
    assert.equal(client.calls[0].resumeToken, "");
    assert.equal(client.calls[1].resumeToken, "t2");
    assert.ok(r.states.includes("reconnecting"));
    assert.equal(r.states.at(-1), "live");
    assert.equal(waits.length, 1);
    assert.equal(S[feed.entries.get("101").uploading.status], "MATCHED");
    assert.deepEqual(r.errors.filter((c) => c !== null), [Code.Unavailable]);
  });

  it("a reset drops what it held before the fresh snapshot", async () => {
    const client = fakeClient([
      { messages: [{ events: [added(up(5, S.PROCESSED))], synced: true, resumeToken: "t1" }],
        error: new ConnectError("restart", Code.Unavailable) },
      { messages: [{ reset: true, events: [added(up(6, S.PREPARED))], synced: true, resumeToken: "u1" }] },
    ]);
    const r = recorder();
    const feed = new CounterFeed(client, 1, r.on, { sleep: tick });
    feed.start();
    await until(() => r.snapshots.length >= 2);
    feed.stop();
    assert.deepEqual([...r.snapshots.at(-1).keys()], ["6"]);
  });

  it("a permanent error stops the feed and is reported", async () => {
    const client = fakeClient([{ messages: [], error: new ConnectError("no access", Code.PermissionDenied) }]);
    const r = recorder();
    const feed = new CounterFeed(client, 1, r.on, { sleep: async () => { throw new Error("must not retry"); } });
    feed.start();
    await until(() => r.states.at(-1) === "error");
    assert.equal(r.states.at(-1), "error");
    assert.deepEqual(r.errors, [Code.PermissionDenied]);
    assert.equal(client.calls.length, 1);
  });

  it("falls back to polling ListUploadings when WatchUploadings is not served", async () => {
    const client = fakeClient(
      [{ messages: [], error: new ConnectError("not implemented", Code.Unimplemented) }],
      [[up(101, S.PREPARED)], [up(101, S.EXPORTED), up(102, S.PREPARED)]],
    );
    const r = recorder();
    let polls = 0;
    const feed = new CounterFeed(client, 1, r.on, { sleep: () => { polls++; return tick(); } });
    feed.start();
    await until(() => r.snapshots.length >= 2);
    feed.stop();
    assert.equal(r.states.at(-1), "polling");
    assert.deepEqual([...r.snapshots[1]], [["101", "EXPORTED"], ["102", "PREPARED"]]);
    assert.deepEqual(feed.entries.get("101").history.map((h) => S[h.status]), ["PREPARED", "EXPORTED"]);
  });
});
