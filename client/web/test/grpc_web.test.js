// An independent gRPC-Web client against the real server: Connect-ES's
// createGrpcWebTransport (from @connectrpc/connect-node, the transport the
// browser's @connectrpc/connect-web speaks) on the server's --web_listen,
// with the code protoc-gen-es generated from our proto (npm run gen).
// scripts/lib/web_tests.sh starts the server on the simulator's demo world:
//
//   UPLOADWATCH_WEB_URL=http://127.0.0.1:PORT node --test test/
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient, Code, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  UploadingService,
  Uploading_Status,
  UploadingEvent_Type,
} from "../gen/metrika/offline_conversions/v1/uploading_service_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";

const URL = process.env.UPLOADWATCH_WEB_URL;
const DEMO_TOKEN = process.env.UPLOADWATCH_DEMO_TOKEN || "demo-token";
const COUNTER = 2215573;
const TERMINAL = new Set([Uploading_Status.PROCESSED, Uploading_Status.LINKAGE_FAILURE]);
const isLive = (id) => id > 100n;

function client() {
  return createClient(
    UploadingService,
    createGrpcWebTransport({ baseUrl: URL, httpVersion: "1.1", useBinaryFormat: true }),
  );
}

async function rejectsWith(code, promise) {
  const err = await promise.then(
    () => assert.fail(`expected ${Code[code]}, the call succeeded`),
    (e) => e,
  );
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(Code[err.code], Code[code], err.message);
  return err;
}

describe("gRPC-Web with Connect-ES", { skip: !URL && "UPLOADWATCH_WEB_URL is not set" }, () => {
  it("gets uploading 12 with every field, with the token as authorization", async () => {
    const { uploading: u } = await client().getUploading(
      { counterId: COUNTER, uploadingId: 12n },
      { headers: { authorization: `OAuth ${DEMO_TOKEN}` }, timeoutMs: 30000 },
    );
    assert.equal(u.id, 12n);
    assert.equal(u.status, Uploading_Status.PROCESSED);
    assert.equal(u.comment.length > 0, true);
    assert.equal(u.lineQuantity, 1480);
    assert.equal(u.sourceQuantity, 1500);
    assert.equal(Number(u.createTime.seconds), Date.parse("2022-12-29T18:02:01Z") / 1000);
  });

  it("lists the demo counter, newest first", async () => {
    const { uploadings } = await client().listUploadings({ counterId: COUNTER });
    const ids = uploadings.map((u) => u.id);
    const live = ids.filter(isLive);
    assert.ok(live.length >= 1, `live uploads: ${live}`);
    assert.deepEqual(ids.filter((id) => !isLive(id)), [19n, 18n, 17n, 16n, 13n, 12n]);
  });

  it("NOT_FOUND carries Metrica's ErrorInfo in grpc-status-details-bin", async () => {
    const err = await rejectsWith(
      Code.NotFound,
      client().getUploading({ counterId: COUNTER, uploadingId: 999999n }),
    );
    const [info] = err.findDetails(ErrorInfoSchema);
    assert.ok(info, `no ErrorInfo in ${JSON.stringify(err.details)}`);
    assert.equal(info.reason, "NOT_FOUND");
    assert.match(err.rawMessage, /999999/);
  });

  it("INVALID_ARGUMENT for ids <= 0, before Metrica is asked", async () => {
    const err = await rejectsWith(
      Code.InvalidArgument,
      client().getUploading({ counterId: COUNTER, uploadingId: 0n }),
    );
    assert.match(err.rawMessage, /uploading_id must be a positive/);
  });

  it("watches a settled uploading: one terminal message, then OK", async () => {
    const messages = [];
    for await (const m of client().watchUploading({ counterId: COUNTER, uploadingId: 12n })) {
      messages.push(m);
    }
    assert.equal(messages.length, 1);
    assert.equal(messages[0].terminal, true);
    assert.equal(messages[0].uploading.status, Uploading_Status.PROCESSED);
  });

  it("watches a live upload: states arrive one by one, in order, to the terminal one", async () => {
    const { uploadings } = await client().listUploadings({ counterId: COUNTER });
    const moving = uploadings.filter((u) => isLive(u.id) && !TERMINAL.has(u.status));
    assert.ok(moving.length > 0, "no live upload under way");
    moving.sort((a, b) => b.status - a.status);
    const id = moving[0].id;
    const seen = [];
    const arrivals = [];
    for await (const m of client().watchUploading(
      { counterId: COUNTER, uploadingId: id },
      { timeoutMs: 120000 },
    )) {
      seen.push(m);
      arrivals.push(Date.now());
    }
    assert.ok(seen.length >= 2, `only ${seen.length} message(s)`);
    for (let i = 1; i < seen.length; i++) {
      assert.ok(seen[i].version > seen[i - 1].version);
      assert.ok(seen[i].uploading.status >= seen[i - 1].uploading.status);
    }
    assert.ok(seen.at(-1).terminal);
    assert.ok(TERMINAL.has(seen.at(-1).uploading.status));
    // Streamed, not buffered to the end: the first state came well before the last.
    assert.ok(arrivals.at(-1) - arrivals[0] >= 500, `all within ${arrivals.at(-1) - arrivals[0]} ms`);
  });

  it("a deadline (grpc-timeout) ends an open watch with DEADLINE_EXCEEDED", async () => {
    const { uploadings } = await client().listUploadings({ counterId: COUNTER });
    const moving = uploadings.find((u) => isLive(u.id) && !TERMINAL.has(u.status));
    assert.ok(moving, "no live upload under way");
    await rejectsWith(Code.DeadlineExceeded, (async () => {
      for await (const _ of client().watchUploading(
        { counterId: COUNTER, uploadingId: moving.id },
        { timeoutMs: 300 },
      ));
    })());
  });

  // WatchUploadings is in the proto; its server side lands with issue 9's
  // redesign. Until then this server answers UNIMPLEMENTED, and the test
  // says so as a TODO instead of passing.
  it("WatchUploadings: a snapshot of the counter, then synced", async (t) => {
    const stream = client().watchUploadings({ counterId: COUNTER });
    const events = [];
    try {
      for await (const m of stream) {
        events.push(...m.events);
        if (m.synced) break;
      }
    } catch (e) {
      if (e instanceof ConnectError && e.code === Code.Unimplemented) {
        t.todo(`the server does not serve WatchUploadings yet: ${e.rawMessage}`);
        return;
      }
      throw e;
    }
    const ids = events.map((e) => e.uploading.id);
    assert.ok(events.every((e) => e.type === UploadingEvent_Type.ADDED));
    for (const id of [12n, 13n, 16n, 17n, 18n, 19n]) assert.ok(ids.includes(id), `${id} missing`);
  });
});
