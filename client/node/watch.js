#!/usr/bin/env node
'use strict';
// Watches one uploading until it reaches a terminal status.
//
//   node watch.js [--server HOST:PORT] [--json] COUNTER ID
//
// Server from --server, else $UPLOADWATCH_ADDR, else 127.0.0.1:50051; token
// from $METRIKA_OAUTH_TOKEN (sent as `authorization: OAuth <token>` when set).
// Exit code: the gRPC status code (0 when the stream ends OK).
const uw = require('./uploadwatch');

async function watch(address, counterId, uploadingId, { json = false, out = console.log } = {}) {
  const client = uw.createClient(address, { token: process.env.METRIKA_OAUTH_TOKEN });
  try {
    // The watch loop: one message per change, the last one terminal.
    const call = client.WatchUploading({ counter_id: counterId, uploading_id: uploadingId });
    for await (const msg of call) {
      if (json) { out(JSON.stringify(msg)); continue; }
      const u = msg.uploading;
      const seen = new Date(Number(msg.observe_time.seconds) * 1000).toISOString().slice(11, 19);
      out(`v${msg.version} ${seen} ${u.status} lines=${u.line_quantity}/${u.source_quantity} ` +
          `linked=${u.linked_quantity} user_not_found=${u.user_not_found_quantity}` +
          (msg.terminal ? ' (terminal)' : ''));
    }
    return 0;
  } finally {
    client.close();
  }
}

async function main(argv) {
  let address = process.env.UPLOADWATCH_ADDR || '127.0.0.1:50051';
  let json = false;
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--server') address = argv[++i];
    else if (argv[i].startsWith('--server=')) address = argv[i].slice('--server='.length);
    else if (argv[i] === '--json') json = true;
    else positional.push(argv[i]);
  }
  if (positional.length !== 2 || !positional.every((p) => /^-?\d+$/.test(p))) {
    console.error('usage: node watch.js [--server HOST:PORT] [--json] COUNTER ID');
    return 2;
  }
  try {
    return await watch(address, Number(positional[0]), positional[1], { json });
  } catch (err) {
    if (err.code === undefined) throw err;
    const info = uw.errorInfo(err);
    console.error(`error: ${uw.codeName(err.code)}${info ? ` [${info.reason}]` : ''}: ${err.details}`);
    return err.code;
  }
}

module.exports = { watch };

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
