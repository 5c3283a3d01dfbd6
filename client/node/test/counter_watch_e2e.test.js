'use strict';
// END-TO-END cases of the Node counter watch against the real server on the
// simulator's demo world. NOT YET RUNNABLE: the server side of
// WatchUploadings is on another branch. Switched on by
// UPLOADWATCH_E2E_COUNTER_WATCH=1; otherwise this file defines no test at
// all, so nothing is skipped.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const uw = require('../uploadwatch');

if (process.env.UPLOADWATCH_E2E_COUNTER_WATCH === '1') {
  describe('counter watch against the real server', () => {
    it('sends the snapshot, then live ADDED and MODIFIED events', async () => {
      const client = uw.createClient(process.env.UPLOADWATCH_ADDR);
      try {
        const view = new uw.CounterView();
        let synced = false;
        const added = new Set();
        const modified = new Set();
        for await (const m of uw.watchCounter(client, { counter_id: uw.DEMO_COUNTER },
          { deadline: uw.deadlineIn(60) })) {
          for (const e of m.events) {
            if (!synced) assert.equal(e.type, 'ADDED');
            else if (e.type === 'ADDED') added.add(e.uploading.id);
            else modified.add(e.uploading.id);
          }
          view.apply(m);
          assert.ok(m.resume_token);
          synced = synced || m.synced;
          if (added.size > 0 && modified.size > 0) break;
        }
        assert.ok(view.synced && added.size > 0 && modified.size > 0);
      } finally {
        client.close();
      }
    });

    it('answers a malformed token with INVALID_ARGUMENT', async () => {
      const client = uw.createClient(process.env.UPLOADWATCH_ADDR);
      try {
        await assert.rejects(async () => {
          for await (const m of uw.watchCounter(client,
            { counter_id: uw.DEMO_COUNTER, resume_token: 'not a token' })) assert.fail(JSON.stringify(m));
        }, (err) => err.code === uw.grpc.status.INVALID_ARGUMENT);
      } finally {
        client.close();
      }
    });
  });
}
