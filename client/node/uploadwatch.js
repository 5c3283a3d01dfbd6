'use strict';
// A small Node.js client library for the uploadwatch gRPC API.
//
// The stubs are loaded at run time from the .proto files in ../../proto by
// @grpc/proto-loader (nothing generated); google.rpc.Status details are
// decoded with protobufjs (what proto-loader itself uses).
//
//   const uw = require('./uploadwatch');
//   const client = uw.createClient('127.0.0.1:50051');
//   for await (const msg of client.WatchUploading({counter_id: 2215573, uploading_id: 101})) {
//     console.log(msg.version, msg.uploading.status, msg.terminal);
//   }
//
//   // A whole counter, resumed by itself; TLS with a CA file.
//   const tlsClient = uw.createClient('uploadwatch.example:443', { tls: { caFile: 'ca.pem' } });
//   const view = new uw.CounterView();
//   for await (const msg of uw.watchCounter(tlsClient, { counter_id: 2215573 })) {
//     view.apply(msg);
//   }
//
// Messages keep the proto's field names (keepCase), int64 fields are strings
// (longs: String), enums are their names (enums: String).

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = process.env.UPLOADWATCH_PROTO_ROOT || path.resolve(__dirname, '../../proto');
const SERVICE_PROTO = 'metrika/offline_conversions/v1/uploading_service.proto';
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  // google/protobuf/*.proto (Timestamp, Any, Duration) come bundled with
  // proto-loader/protobufjs; our own and google/rpc protos come from here.
  includeDirs: [PROTO_ROOT],
};
const DEMO_COUNTER = 2215573;
const TERMINAL_STATUSES = new Set(['PROCESSED', 'LINKAGE_FAILURE']);
const DETAILS_KEY = 'grpc-status-details-bin';

let api = null;
/** The loaded package metrika.offline_conversions.v1 (UploadingService, ...). */
function loadApi() {
  if (api === null) {
    const definition = protoLoader.loadSync(SERVICE_PROTO, LOADER_OPTIONS);
    api = grpc.loadPackageDefinition(definition).metrika.offline_conversions.v1;
  }
  return api;
}

/**
 * Channel credentials: plaintext without options, else TLS. Any file implies
 * TLS; without `caFile` the system's roots are trusted; `certFile` and
 * `keyFile` (both or neither) are a client certificate for mutual TLS.
 * Throws for half a client certificate or a file that cannot be read.
 */
function channelCredentials({ tls = false, caFile, certFile, keyFile } = {}) {
  if (!(tls || caFile || certFile || keyFile)) return grpc.credentials.createInsecure();
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new Error('a client certificate needs its key: give certFile and keyFile');
  }
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(caFile), read(keyFile), read(certFile));
}

/**
 * A UploadingService client. With `token`, every call carries
 * `authorization: OAuth <token>`, which wins over the server's own token.
 * `tls` takes channelCredentials()'s options; `credentials` wins over it.
 */
function createClient(address = '127.0.0.1:50051', { token, credentials, tls } = {}) {
  const options = {};
  if (token) {
    options.interceptors = [(opts, next) => new grpc.InterceptingCall(next(opts), {
      start(metadata, listener, start) {
        if (metadata.get('authorization').length === 0) metadata.set('authorization', `OAuth ${token}`);
        start(metadata, listener);
      },
    })];
  }
  const { UploadingService } = loadApi();
  return new UploadingService(address, credentials || channelCredentials(tls), options);
}

/**
 * Follows a whole counter (WatchUploadings): an async iterator of every
 * response, bookmarks and resets included (feed them to a CounterView).
 * `request` is a WatchUploadingsRequest ({counter_id, type, resume_token}).
 * It never ends by itself: the error that ends the watch is thrown (a gRPC
 * error with `code`; DEADLINE_EXCEEDED after `deadline`); a stream that ends
 * OK breaks the contract and throws an Error.
 *
 * When a stream that had answered ends with UNAVAILABLE (the server's stream
 * lifetime, a restart), this resumes at once with the last `resume_token`
 * received: the caller sees one stream. A resumed stream that fails before
 * its first message throws, so a server that is gone is not retried forever.
 * Leaving the loop (break, return) cancels the call.
 */
async function* watchCounter(client, request, { metadata = new grpc.Metadata(), deadline } = {}) {
  const next = { ...request };
  for (;;) {
    const call = client.WatchUploadings(next, metadata, deadline ? { deadline } : {});
    let answered = false;
    try {
      for await (const msg of call) {
        answered = true;
        if (msg.resume_token) next.resume_token = msg.resume_token;
        yield msg;
      }
    } catch (err) {
      if (err.code === grpc.status.UNAVAILABLE && answered) continue;
      throw err;
    } finally {
      call.cancel(); // a no-op once ended; stops the call if the caller left
    }
    throw new Error('the counter watch ended without an error; it never ends by itself');
  }
}

/**
 * What a counter watch's client holds: the latest uploading of each id.
 * Feed it every message of watchCounter(), in order: a `reset` drops
 * everything first, each event then stores its uploading.
 */
class CounterView {
  constructor() {
    this.uploadings = new Map(); // id (string) -> uploading
    this.synced = false; // a synced message came since the start/last reset
  }

  apply(msg) {
    if (msg.reset) {
      this.uploadings.clear();
      this.synced = false;
    }
    for (const event of msg.events) this.uploadings.set(String(event.uploading.id), event.uploading);
    if (msg.synced) this.synced = true;
  }

  /** Every uploading held, newest (highest id) first. */
  newestFirst() {
    return [...this.uploadings.values()].sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : -1));
  }

  get size() { return this.uploadings.size; }
}

/** Call metadata carrying a Metrica OAuth token. */
function authMetadata(token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `OAuth ${token}`);
  return metadata;
}

/** A deadline `seconds` from now, for the `deadline` call option. */
function deadlineIn(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

/** Promise of a unary call: unary(client, 'GetUploading', request, {metadata, deadline}). */
function unary(client, method, request, { metadata = new grpc.Metadata(), deadline } = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, deadline ? { deadline } : {}, (err, response) =>
      err ? reject(err) : resolve(response));
  });
}

let rpcTypes = null;
function loadRpcTypes() {
  if (rpcTypes === null) {
    const root = new protobuf.Root();
    root.resolvePath = (origin, target) => path.join(PROTO_ROOT, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
    rpcTypes = {
      Status: root.lookupType('google.rpc.Status'),
      ErrorInfo: root.lookupType('google.rpc.ErrorInfo'),
      RetryInfo: root.lookupType('google.rpc.RetryInfo'),
    };
  }
  return rpcTypes;
}

/**
 * The rich status of a failed call: {code, message, details: [...]} decoded
 * from the `grpc-status-details-bin` trailer, each detail an object with its
 * `@type` (e.g. 'google.rpc.ErrorInfo') and its fields; null without one.
 */
function richStatus(err) {
  const raw = err && err.metadata ? err.metadata.get(DETAILS_KEY) : [];
  if (raw.length === 0) return null;
  const types = loadRpcTypes();
  const status = types.Status.decode(raw[0]);
  const details = status.details.map((any) => {
    const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = { 'google.rpc.ErrorInfo': types.ErrorInfo, 'google.rpc.RetryInfo': types.RetryInfo }[name];
    const fields = type ? type.toObject(type.decode(any.value), { longs: String, defaults: true }) : {};
    return { '@type': name, ...fields };
  });
  return { code: status.code, message: status.message, details };
}

/** The google.rpc.ErrorInfo detail of a failed call ({reason, domain, metadata}), or null. */
function errorInfo(err) {
  const status = richStatus(err);
  return (status && status.details.find((d) => d['@type'] === 'google.rpc.ErrorInfo')) || null;
}

/** The name of a gRPC status code ('NOT_FOUND' for 5). */
function codeName(code) {
  return Object.keys(grpc.status).find((k) => grpc.status[k] === code) || String(code);
}

module.exports = {
  grpc,
  PROTO_ROOT,
  LOADER_OPTIONS,
  DEMO_COUNTER,
  TERMINAL_STATUSES,
  loadApi,
  channelCredentials,
  createClient,
  watchCounter,
  CounterView,
  authMetadata,
  deadlineIn,
  unary,
  richStatus,
  errorInfo,
  codeName,
};
