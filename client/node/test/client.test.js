'use strict';
// Tests of the Node client against a running uploadwatch server on the Metrica
// simulator's demo world (scripts/lib/client_tests.sh starts one):
//
//   UPLOADWATCH_ADDR=127.0.0.1:PORT node --test test/
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const uw = require('../uploadwatch');

const ADDR = process.env.UPLOADWATCH_ADDR;
const DEMO_TOKEN = process.env.UPLOADWATCH_DEMO_TOKEN || 'demo-token';
const COUNTER = uw.DEMO_COUNTER;
// Live demo uploads have ids from 101 up; a new one starts every 30 s (3 s at
// --demo_speed=10), each done 90 s (9 s) after it starts.
const isLive = (id) => Number(id) > 100;
const WATCH_DEADLINE_S = Number(process.env.UPLOADWATCH_WATCH_DEADLINE || 170);
const { status } = uw.grpc;

// Collects a server stream: resolves {messages, code} once it ended OK,
// rejects with the call's error otherwise.
async function collect(call) {
  const ended = new Promise((resolve) => call.on('status', resolve));
  const messages = [];
  for await (const msg of call) messages.push(msg);
  return { messages, code: (await ended).code };
}

async function rejectsWith(code, promise) {
  const err = await promise.then(
    () => assert.fail(`expected ${uw.codeName(code)}, the call succeeded`),
    (e) => e);
  assert.equal(uw.codeName(err.code), uw.codeName(code), err.details);
  return err;
}

// The moving demo uploading that should end first: of those under way, the
// one furthest along (the List also refreshes the server's view of them).
async function pickMovingUploading(client) {
  if (process.env.UPLOADWATCH_WATCH_ID) return process.env.UPLOADWATCH_WATCH_ID;
  const { uploadings } = await uw.unary(client, 'ListUploadings', { counter_id: COUNTER });
  const order = ['PREPARED', 'UPLOADED', 'EXPORTED', 'MATCHED'];
  const underWay = uploadings.filter((u) => isLive(u.id) && !uw.TERMINAL_STATUSES.has(u.status));
  assert.ok(underWay.length > 0, `no moving uploading under way: ${JSON.stringify(uploadings)}`);
  underWay.sort((a, b) => order.indexOf(b.status) - order.indexOf(a.status));
  return underWay[0].id;
}

describe('uploadwatch node client', { skip: !ADDR && 'UPLOADWATCH_ADDR is not set' }, () => {
  let client;
  before(() => { client = uw.createClient(ADDR); }); // relies on the server's token
  after(() => client && client.close());

  it('lists the demo counter, newest first, with paging and type', async () => {
    const { uploadings } = await uw.unary(client, 'ListUploadings', { counter_id: COUNTER });
    const ids = uploadings.map((u) => u.id);
    const live = ids.filter(isLive);
    assert.ok(live.length >= 3, `live uploads: ${live}`);
    assert.deepEqual(live, [...live].sort((a, b) => Number(b) - Number(a)));
    assert.deepEqual(ids, [...live, '19', '18', '17', '16', '13', '12']);
    assert.ok(uploadings.every((u) => u.type === 'BASIC'));
    const page = await uw.unary(client, 'ListUploadings', { counter_id: COUNTER, limit: 2, offset: 1 });
    // A new live upload may start between the calls: compare with both lists.
    const later = (await uw.unary(client, 'ListUploadings', { counter_id: COUNTER })).uploadings.map((u) => u.id);
    const got = JSON.stringify(page.uploadings.map((u) => u.id));
    assert.ok([JSON.stringify(ids.slice(1, 3)), JSON.stringify(later.slice(1, 3))].includes(got), got);
    const calls = await uw.unary(client, 'ListUploadings', { counter_id: COUNTER, type: 'CALLS' });
    assert.deepEqual(calls.uploadings.map((u) => [u.id, u.static_calls_quantity]), [['14', 204]]);
  });

  it('gets every field of uploading 12, with the token in the metadata', async () => {
    const { uploading: u } = await uw.unary(client, 'GetUploading',
      { counter_id: COUNTER, uploading_id: 12 },
      { metadata: uw.authMetadata(DEMO_TOKEN), deadline: uw.deadlineIn(30) });
    assert.deepEqual(u, {
      id: '12',
      create_time: { seconds: String(Date.parse('2022-12-29T18:02:01Z') / 1000), nanos: 0 },
      source_quantity: 1500,
      line_quantity: 1480,
      comment: 'CRM export, December',
      client_id_type: 'CLIENT_ID',
      status: 'PROCESSED',
      type: 'BASIC',
      goal_not_found_quantity: 2,
      user_not_found_quantity: 86,
      linked_quantity: 1392,
      static_calls_quantity: 0,
      dynamic_calls_quantity: 0,
      status_raw: '',
      client_id_type_raw: '',
      type_raw: '',
    });
  });

  it('follows a moving uploading to its terminal status', async () => {
    let id;
    let result;
    for (let attempt = 0; attempt < 2; attempt++) {
      id = await pickMovingUploading(client);
      result = await collect(client.WatchUploading({ counter_id: COUNTER, uploading_id: id },
        { deadline: uw.deadlineIn(WATCH_DEADLINE_S) }));
      if (result.messages.length > 1) break; // else it ended between List and Watch
    }
    const { messages, code } = result;
    assert.equal(code, status.OK);
    assert.ok(messages.length > 1, `uploading ${id} did not move`);
    const versions = messages.map((m) => BigInt(m.version));
    assert.ok(versions[0] >= 1n);
    for (let i = 1; i < messages.length; i++) {
      assert.ok(versions[i - 1] < versions[i], `versions not increasing: ${versions}`);
      assert.notDeepEqual(messages[i - 1].uploading, messages[i].uploading, 'a duplicate message');
    }
    for (const m of messages) assert.equal(m.uploading.id, id);
    for (const m of messages.slice(0, -1)) {
      assert.equal(m.terminal, false);
      assert.ok(!uw.TERMINAL_STATUSES.has(m.uploading.status), m.uploading.status);
    }
    const last = messages[messages.length - 1];
    assert.equal(last.terminal, true);
    assert.ok(uw.TERMINAL_STATUSES.has(last.uploading.status), last.uploading.status);
  });

  it('gives one terminal message for an uploading that already ended', async () => {
    const { messages, code } = await collect(client.WatchUploading(
      { counter_id: COUNTER, uploading_id: 13 }, { deadline: uw.deadlineIn(30) }));
    assert.equal(code, status.OK);
    assert.equal(messages.length, 1);
    assert.equal(messages[0].terminal, true);
    assert.equal(messages[0].uploading.status, 'LINKAGE_FAILURE');
  });

  it('rejects counter 0 with INVALID_ARGUMENT', async () => {
    const err = await rejectsWith(status.INVALID_ARGUMENT,
      uw.unary(client, 'GetUploading', { counter_id: 0, uploading_id: 12 }));
    assert.match(err.details, /counter_id/);
    await rejectsWith(status.INVALID_ARGUMENT,
      collect(client.WatchUploading({ counter_id: 0, uploading_id: 12 }, { deadline: uw.deadlineIn(10) })));
    await rejectsWith(status.INVALID_ARGUMENT,
      uw.unary(client, 'ListUploadings', { counter_id: COUNTER, limit: 10001 }));
  });

  it('answers a wrong token with UNAUTHENTICATED', async () => {
    const wrong = uw.createClient(ADDR, { token: 'nope' });
    try {
      await rejectsWith(status.UNAUTHENTICATED,
        uw.unary(wrong, 'GetUploading', { counter_id: COUNTER, uploading_id: 12 }));
      await rejectsWith(status.UNAUTHENTICATED,
        collect(wrong.WatchUploading({ counter_id: COUNTER, uploading_id: 12 }, { deadline: uw.deadlineIn(10) })));
    } finally {
      wrong.close();
    }
  });

  it('decodes the google.rpc.ErrorInfo of NOT_FOUND', async () => {
    const err = await rejectsWith(status.NOT_FOUND,
      uw.unary(client, 'GetUploading', { counter_id: COUNTER, uploading_id: 999999 }));
    const rich = uw.richStatus(err);
    assert.ok(rich, 'no grpc-status-details-bin trailer');
    assert.equal(rich.code, status.NOT_FOUND);
    assert.equal(rich.message, err.details);
    const info = uw.errorInfo(err);
    assert.ok(info, 'no google.rpc.ErrorInfo detail');
    assert.equal(info.reason, 'NOT_FOUND');
    assert.ok(info.domain);
  });

  it('runs watch.js to the end, exit code from the gRPC status', async () => {
    const run = (...args) => new Promise((resolve) => {
      execFile(process.execPath, [path.join(__dirname, '..', 'watch.js'), '--server', ADDR, ...args],
        { timeout: 30000, env: { ...process.env, METRIKA_OAUTH_TOKEN: '' } },
        (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
    });
    const ok = await run(String(COUNTER), '15');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^v\d+ .* PROCESSED .*\(terminal\)$/m);
    const missing = await run(String(COUNTER), '999999');
    assert.equal(missing.code, status.NOT_FOUND);
    assert.match(missing.stderr, /NOT_FOUND/);
  });
});
