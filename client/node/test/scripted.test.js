'use strict';
// Tests of the Node client's counter watch (resume, reset) against a real
// gRPC server on loopback that answers WatchUploadings from scripts, and of
// its TLS options against the real uploadwatch server serving TLS and mTLS
// (scripts/lib/client_tests.sh starts those and sets UPLOADWATCH_TLS_ADDR,
// UPLOADWATCH_MTLS_ADDR and UPLOADWATCH_CERTS).
//
//   node --test test/
const { describe, it, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const uw = require('../uploadwatch');

const { grpc } = uw;
const { status } = grpc;
const ROTATED = { code: status.UNAVAILABLE, details: 'maximum stream lifetime' };
const HANG = Symbol('hang');

// A WatchUploadingsResponse; events are [type, id, status] triples.
function message(token, events = [], { synced = false, reset = false } = {}) {
  return {
    events: events.map(([type, id, st]) => ({ type, uploading: { id: String(id), status: st } })),
    synced,
    reset,
    resume_token: token,
  };
}

// Answers the n-th WatchUploadings call with scripts[n]: [messages, end],
// end being {code, details}, null for OK, or HANG: the stream stays open
// until the client leaves.
class ScriptedServer {
  constructor() {
    this.scripts = [];
    this.requests = [];
    this.server = new grpc.Server();
    this.server.addService(uw.loadApi().UploadingService.service, {
      WatchUploadings: (call) => {
        const n = this.requests.length;
        this.requests.push(call.request);
        if (n >= this.scripts.length) {
          call.emit('error', { code: status.INTERNAL, details: 'no script left' });
          return;
        }
        const [messages, end] = this.scripts[n];
        for (const m of messages) call.write(m);
        if (end === HANG) return; // grpc-js ends it when the client leaves
        if (end) call.emit('error', end);
        else call.end();
      },
    });
  }

  start() {
    return new Promise((resolve, reject) => {
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
        if (err) return reject(err);
        this.address = `127.0.0.1:${port}`;
        resolve();
      });
    });
  }

  stop() { this.server.forceShutdown(); }
}

describe('counter watch against a scripted server', () => {
  let server;
  let client;
  beforeEach(async () => {
    server = new ScriptedServer();
    await server.start();
    client = uw.createClient(server.address, { token: 'tok' });
  });
  afterEach(() => {
    client.close();
    server.stop();
  });

  // Every message of a watch of counter 1, and the error that ended it.
  async function watch(request = {}, options = {}) {
    const got = [];
    try {
      for await (const m of uw.watchCounter(client, { counter_id: 1, ...request }, options)) got.push(m);
    } catch (err) {
      return { got, err };
    }
    return assert.fail('the watch ended without an error');
  }

  it('resumes with the last token on UNAVAILABLE', async () => {
    server.scripts = [
      [[message('t1', [['ADDED', 5, 'PREPARED']]),
        message('t2', [['ADDED', 6, 'MATCHED']], { synced: true }),
        message('t3')], ROTATED], // a bookmark's token counts too
      [[message('t4', [], { synced: true })], ROTATED],
      [[message('t5', [['MODIFIED', 5, 'UPLOADED']], { synced: true })],
        { code: status.PERMISSION_DENIED, details: 'access revoked' }],
    ];
    const { got, err } = await watch({ type: 'CALLS' });
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.deepEqual(got.map((m) => m.resume_token), ['t1', 't2', 't3', 't4', 't5']);
    assert.deepEqual(server.requests.map((r) => r.resume_token), ['', 't3', 't4']);
    for (const r of server.requests) assert.deepEqual([r.counter_id, r.type], [1, 'CALLS']);
    assert.equal(got[0].events[0].uploading.status, 'PREPARED');
  });

  it("starts from the caller's token", async () => {
    server.scripts = [[[], { code: status.NOT_FOUND, details: 'no counter 1' }]];
    const { got, err } = await watch({ resume_token: 'saved' });
    assert.equal(err.code, status.NOT_FOUND);
    assert.deepEqual(got, []);
    assert.deepEqual(server.requests.map((r) => r.resume_token), ['saved']);
  });

  it('ends when a resume fails before an answer', async () => {
    server.scripts = [
      [[message('t1', [], { synced: true })], ROTATED],
      [[], { code: status.UNAVAILABLE, details: 'shutting down' }],
    ];
    const { got, err } = await watch();
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.details, 'shutting down');
    assert.equal(got.length, 1);
    assert.equal(server.requests.length, 2);
  });

  it('does not retry UNAVAILABLE before any answer', async () => {
    server.scripts = [[[], { code: status.UNAVAILABLE, details: 'shutting down' }]];
    const { err } = await watch();
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(server.requests.length, 1);
  });

  it('treats a stream ending OK as a broken contract', async () => {
    server.scripts = [[[message('t1', [], { synced: true })], null]];
    const { err } = await watch();
    assert.match(err.message, /never ends by itself/);
  });

  it('is bounded by the deadline', async () => {
    server.scripts = [[[message('t1', [], { synced: true })], ROTATED], [[message('t2')], HANG]];
    const { got, err } = await watch({}, { deadline: uw.deadlineIn(0.3) });
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.deepEqual(got.map((m) => m.resume_token), ['t1', 't2']);
  });

  it('the view drops what it held on a reset', async () => {
    server.scripts = [
      [[message('t1', [['ADDED', 5, 'PREPARED'], ['ADDED', 6, 'PROCESSED']], { synced: true }),
        message('t2', [['MODIFIED', 5, 'UPLOADED']])], ROTATED],
      [[message('t3', [], { reset: true }),
        message('t4', [['ADDED', 7, 'PREPARED']], { synced: true })],
        { code: status.PERMISSION_DENIED, details: 'revoked' }],
    ];
    const view = new uw.CounterView();
    const states = [];
    await assert.rejects(async () => {
      for await (const m of uw.watchCounter(client, { counter_id: 1 })) {
        view.apply(m);
        states.push([view.synced, view.newestFirst().map((u) => [u.id, u.status])]);
      }
    }, (err) => err.code === status.PERMISSION_DENIED);
    assert.deepEqual(states, [
      [true, [['6', 'PROCESSED'], ['5', 'PREPARED']]],
      [true, [['6', 'PROCESSED'], ['5', 'UPLOADED']]],
      [false, []],
      [true, [['7', 'PREPARED']]],
    ]);
  });
});

const CERTS = process.env.UPLOADWATCH_CERTS;
const TLS_ADDR = process.env.UPLOADWATCH_TLS_ADDR;
const MTLS_ADDR = process.env.UPLOADWATCH_MTLS_ADDR;
const cert = (name) => path.join(CERTS, name);

describe('TLS to the real server', { skip: !(CERTS && TLS_ADDR && MTLS_ADDR) && 'TLS servers not set' }, () => {
  // The code of a GetUploading of demo uploading 12 over `tls`.
  async function getCode(address, tls) {
    const client = uw.createClient(address, { tls });
    try {
      const { uploading } = await uw.unary(client, 'GetUploading',
        { counter_id: uw.DEMO_COUNTER, uploading_id: 12 }, { deadline: uw.deadlineIn(5) });
      assert.equal(uploading.id, '12');
      return status.OK;
    } catch (err) {
      if (err.code === undefined) throw err;
      return err.code;
    } finally {
      client.close();
    }
  }

  it('connects with the CA file', async () => {
    assert.equal(await getCode(TLS_ADDR, { caFile: cert('ca.pem') }), status.OK);
  });

  it('refuses an untrusted server and plaintext', async () => {
    assert.equal(await getCode(TLS_ADDR, { caFile: cert('stranger.pem') }), status.UNAVAILABLE);
    assert.equal(await getCode(TLS_ADDR, undefined), status.UNAVAILABLE);
  });

  it('mTLS needs a client certificate from the CA', async () => {
    assert.equal(await getCode(MTLS_ADDR,
      { caFile: cert('ca.pem'), certFile: cert('client.pem'), keyFile: cert('client.key') }), status.OK);
    assert.equal(await getCode(MTLS_ADDR, { caFile: cert('ca.pem') }), status.UNAVAILABLE);
    assert.equal(await getCode(MTLS_ADDR,
      { caFile: cert('ca.pem'), certFile: cert('stranger.pem'), keyFile: cert('stranger.key') }),
    status.UNAVAILABLE);
  });

  it('refuses half a client certificate and a missing file', () => {
    assert.throws(() => uw.channelCredentials({ certFile: cert('client.pem') }), /needs its key/);
    assert.throws(() => uw.channelCredentials({ caFile: cert('nope.pem') }), /ENOENT/);
  });
});
