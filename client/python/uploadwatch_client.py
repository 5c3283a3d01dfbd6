#!/usr/bin/python3
"""A small Python client for the uploadwatch gRPC API.

Stubs are generated, not committed: run client/python/generate_stubs.sh first
(they land in client/python/gen/, or in $UPLOADWATCH_PY_GEN). Needs Debian's
python3-grpcio and python3-protobuf.

As a library:

    from uploadwatch_client import Client, pb
    with Client("127.0.0.1:50051") as client:
        for msg in client.watch(2215573, 101):
            print(msg.version, pb.Uploading.Status.Name(msg.uploading.status))

    # A whole counter, resumed by itself when the server ends the stream;
    # TLS with a CA file (cert_file and key_file add a client certificate).
    view = CounterView()
    with Client("uploadwatch.example:443", ca_file="ca.pem") as client:
        for msg in client.watch_counter(2215573):
            view.apply(msg)
            print(len(view), "uploadings", "synced" if view.synced else "syncing")

As a command (token from METRIKA_OAUTH_TOKEN, sent as call metadata when set;
exit code = the gRPC status code, 0 on OK):

    uploadwatch_client.py [--server HOST:PORT] [TLS] [--json] list COUNTER
    uploadwatch_client.py [--server HOST:PORT] [TLS] [--json] get COUNTER ID
    uploadwatch_client.py [--server HOST:PORT] [TLS] [--json] watch COUNTER ID
    uploadwatch_client.py [--server HOST:PORT] [TLS] [--json] watch COUNTER

where TLS is [--tls] [--ca_file PEM] [--cert_file PEM --key_file PEM].
"""

import argparse
import os
import sys
import time

_GEN = os.environ.get("UPLOADWATCH_PY_GEN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "gen")
if _GEN not in sys.path:
    sys.path.insert(0, _GEN)

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

try:
    from google.rpc import error_details_pb2, status_pb2  # noqa: E402
    from metrika.offline_conversions.v1 import uploading_service_pb2 as pb  # noqa: E402
    from metrika.offline_conversions.v1 import uploading_service_pb2_grpc as pb_grpc  # noqa: E402
except ImportError as e:  # pragma: no cover - a setup error, said plainly
    raise ImportError(
        f"uploadwatch stubs not found in {_GEN}: run client/python/generate_stubs.sh"
    ) from e

DEMO_COUNTER = 2215573
TERMINAL_STATUSES = frozenset({pb.Uploading.PROCESSED, pb.Uploading.LINKAGE_FAILURE})
_DETAILS_KEY = "grpc-status-details-bin"


def auth_metadata(token):
    """Call metadata carrying a Metrica OAuth token (empty without one)."""
    return (("authorization", f"OAuth {token}"),) if token else ()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def channel_credentials(tls=False, ca_file=None, cert_file=None, key_file=None):
    """grpc.ChannelCredentials for TLS (None: plaintext). Any file implies
    TLS; without `ca_file` the system's roots are trusted; `cert_file` and
    `key_file` (both or neither) are a client certificate for mutual TLS.
    Raises ValueError for half a client certificate, OSError for a file that
    cannot be read."""
    if not (tls or ca_file or cert_file or key_file):
        return None
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs its key: give cert_file and key_file")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file) if ca_file else None,
        private_key=_read(key_file) if key_file else None,
        certificate_chain=_read(cert_file) if cert_file else None)


class CounterView:
    """What a counter watch's client holds: the latest pb.Uploading of each
    uploading by id. Feed it every message of watch_counter(), in order: a
    `reset` drops everything first, each event then stores its uploading."""

    def __init__(self):
        self.uploadings = {}  # id -> pb.Uploading
        self.synced = False   # a synced message came since the start/last reset

    def apply(self, message):
        if message.reset:
            self.uploadings.clear()
            self.synced = False
        for event in message.events:
            self.uploadings[event.uploading.id] = event.uploading
        if message.synced:
            self.synced = True

    def newest_first(self):
        return [self.uploadings[i] for i in sorted(self.uploadings, reverse=True)]

    def __len__(self):
        return len(self.uploadings)


class Client:
    """UploadingService over one channel. A `token` given here is sent with
    every call and wins over the server's own token. TLS options as
    channel_credentials()."""

    def __init__(self, target="127.0.0.1:50051", token=None, channel=None, tls=False,
                 ca_file=None, cert_file=None, key_file=None):
        if channel is None:
            creds = channel_credentials(tls, ca_file, cert_file, key_file)
            channel = (grpc.secure_channel(target, creds) if creds is not None
                       else grpc.insecure_channel(target))
        self._channel = channel
        self._stub = pb_grpc.UploadingServiceStub(self._channel)
        self._metadata = auth_metadata(token)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def list(self, counter_id, limit=0, offset=0, type=pb.Uploading.TYPE_UNSPECIFIED,
             timeout=30):
        """The counter's uploadings (a list of pb.Uploading), newest first."""
        request = pb.ListUploadingsRequest(counter_id=counter_id, limit=limit,
                                           offset=offset, type=type)
        return list(self._stub.ListUploadings(request, timeout=timeout,
                                              metadata=self._metadata).uploadings)

    def get(self, counter_id, uploading_id, timeout=30):
        """The current state of one uploading (a pb.Uploading)."""
        request = pb.GetUploadingRequest(counter_id=counter_id, uploading_id=uploading_id)
        return self._stub.GetUploading(request, timeout=timeout,
                                       metadata=self._metadata).uploading

    def watch(self, counter_id, uploading_id, timeout=None):
        """The stream of pb.WatchUploadingResponse until a terminal status.

        Returns the call: iterate it for the messages (an error raises
        grpc.RpcError from the loop), call .cancel() to stop early.
        """
        request = pb.WatchUploadingRequest(counter_id=counter_id, uploading_id=uploading_id)
        return self._stub.WatchUploading(request, timeout=timeout, metadata=self._metadata)

    def watch_counter(self, counter_id, type=pb.Uploading.TYPE_UNSPECIFIED, resume_token="",
                      timeout=None):
        """Follows a whole counter (WatchUploadings): yields every
        pb.WatchUploadingsResponse, bookmarks and resets included (feed them
        to a CounterView). Never ends by itself: the error that ends the
        watch is raised as grpc.RpcError (DEADLINE_EXCEEDED once `timeout`
        seconds have passed); a stream that ends OK breaks the contract and
        raises RuntimeError.

        When a stream that had answered ends with UNAVAILABLE (the server's
        stream lifetime, a restart), this resumes at once with the last
        `resume_token` received, so the caller sees one stream. A resumed
        stream that fails before its first message raises, so a server that
        is gone is not retried forever. Close the generator to stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        request = pb.WatchUploadingsRequest(counter_id=counter_id, type=type,
                                            resume_token=resume_token)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            call = self._stub.WatchUploadings(request, timeout=remaining,
                                              metadata=self._metadata)
            answered = False
            try:
                for message in call:
                    answered = True
                    if message.resume_token:
                        request.resume_token = message.resume_token
                    yield message
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and answered:
                    continue
                raise
            finally:
                call.cancel()  # a no-op once ended; stops it if the caller left
            raise RuntimeError("the counter watch ended without an error; "
                               "it never ends by itself")


def rich_status(error):
    """The google.rpc.Status of a failed call (from the trailing metadata
    `grpc-status-details-bin`), or None when the server sent no details."""
    for key, value in error.trailing_metadata() or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def error_info(error):
    """The google.rpc.ErrorInfo detail of a failed call, or None."""
    status = rich_status(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def retry_delay_seconds(error):
    """The google.rpc.RetryInfo delay of a failed call in seconds, or None."""
    status = rich_status(error)
    for detail in status.details if status else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


def to_json(message):
    """The proto3 JSON form with the proto's own field names (Metrica's)."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True,
                                     indent=None, sort_keys=False)


def _describe(u):
    status = pb.Uploading.Status.Name(u.status) if u.status else (u.status_raw or "?")
    return (f"{u.id:>6}  {status:<15}  lines={u.line_quantity}/{u.source_quantity}"
            f"  linked={u.linked_quantity}  user_not_found={u.user_not_found_quantity}"
            f"  {u.comment!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="uploadwatch example client")
    parser.add_argument("--server", default=os.environ.get("UPLOADWATCH_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--json", action="store_true", help="print the proto's JSON")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca_file", help="PEM CAs to trust for the server (implies --tls)")
    parser.add_argument("--cert_file", help="PEM client certificate (mTLS, with --key_file)")
    parser.add_argument("--key_file", help="PEM key of --cert_file")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list").add_argument("counter", type=int)
    sub.add_parser("get").add_argument("counter", type=int)
    sub.choices["get"].add_argument("id", type=int)
    p = sub.add_parser("watch", help="COUNTER ID: one uploading; COUNTER: the whole counter")
    p.add_argument("counter", type=int)
    p.add_argument("id", type=int, nargs="?")
    args = parser.parse_args(argv)
    if bool(args.cert_file) != bool(args.key_file):
        parser.error("--cert_file and --key_file go together")

    with Client(args.server, token=os.environ.get("METRIKA_OAUTH_TOKEN"), tls=args.tls,
                ca_file=args.ca_file, cert_file=args.cert_file,
                key_file=args.key_file) as client:
        try:
            if args.command == "list":
                for u in client.list(args.counter):
                    print(to_json(u) if args.json else _describe(u))
            elif args.command == "get":
                u = client.get(args.counter, args.id)
                print(to_json(u) if args.json else _describe(u))
            elif args.id is None:
                # The counter: one line per event (or one response per line).
                for msg in client.watch_counter(args.counter):
                    if args.json:
                        print(to_json(msg), flush=True)
                        continue
                    if msg.reset:
                        print("RESET: dropping what was held", flush=True)
                    for e in msg.events:
                        print(f"{pb.UploadingEvent.Type.Name(e.type):<8}  "
                              f"{_describe(e.uploading)}", flush=True)
                    if msg.synced:
                        print("SYNCED", flush=True)
            else:
                # The watch loop: one message per change, the last one terminal.
                for msg in client.watch(args.counter, args.id):
                    if args.json:
                        print(to_json(msg), flush=True)
                        continue
                    seen = msg.observe_time.ToDatetime().strftime("%H:%M:%S")
                    print(f"v{msg.version:<3} {seen}  {_describe(msg.uploading)}"
                          + ("  (terminal)" if msg.terminal else ""), flush=True)
        except grpc.RpcError as e:
            info = error_info(e)
            reason = f" [{info.reason}]" if info else ""
            print(f"error: {e.code().name}{reason}: {e.details()}", file=sys.stderr)
            return e.code().value[0]
        except KeyboardInterrupt:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
