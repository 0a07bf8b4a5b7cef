#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

The seeds are the bytes real clients sent (tests/fixtures/), the golden vectors (the Noise
initiation, RFC 7541's HPACK examples) and example policies, each behind the selector byte its
target reads first. Run from anywhere; existing seed files are overwritten, other corpus files
are left alone. `cargo fuzz cmin` may later fold them into hash-named files.
"""

import base64
import json
import pathlib
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

FUZZ = pathlib.Path(__file__).resolve().parent
FIXTURES = FUZZ.parent / "tests" / "fixtures"


def write(target, name, data):
    path = FUZZ / "corpus" / target / f"seed-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fixture(name):
    return (FIXTURES / name).read_bytes()


# --- noise: 0x00 + raw initiation (base64-encoded by the target), 0x02 + header text,
#     0x01 + bytes after a valid handshake (records: type 4, u16 BE length, ciphertext).
vector = json.loads(fixture("handshake_vector.json"))
write("noise", "initiation-raw", b"\x00" + bytes.fromhex(vector["init_message_hex"]))
write("noise", "initiation-header", b"\x02" + vector["x_tailscale_handshake_header"].encode())
write("noise", "records", b"\x01" + b"\x04\x00\x20" + bytes(32) + b"\x04\x00\x00")

# --- hpack: RFC 7541 C.3 (raw) and C.4 (Huffman) request sequences as one input each, cut
#     into blocks by the selector's low nibble; C.5/C.6-style size updates.
C3 = ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]
write("hpack", "rfc7541-c3", b"\x00" + b"".join(bytes.fromhex(b) for b in C3))
write("hpack", "rfc7541-c4", b"\x10" + b"".join(bytes.fromhex(b) for b in C4))
write("hpack", "size-update", b"\x01" + bytes.fromhex("3fe11f82203f2282"))


# --- h2_connection: HTTP/2 frames a client sends, after the preface + SETTINGS the target
#     prepends (selector bit 0); the upper bits cut the bytes into records of k*64+1 bytes.
def h2_int(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def h2_literal(name, value):
    name, value = name.encode(), value.encode()
    return b"\x00" + h2_int(len(name), 7, 0) + name + h2_int(len(value), 7, 0) + value


def h2_frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_request(stream, path, body, end_headers=True):
    head = b"".join(h2_literal(n, v) for n, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "unused"),
        ("content-type", "application/json"), ("content-length", str(len(body)))])
    return h2_frame(1, 0x4, stream, head) + h2_frame(0, 0x1, stream, body)


register = fixture("register_request.json")
stream = fixture("map_request_stream.json")
lite = fixture("map_request_lite.json")
for record, selector in [("big", 0xFF), ("small", 0x21)]:
    write("h2_connection", f"register-{record}", bytes([selector]) + h2_request(1, "/machine/register", register))
write("h2_connection", "map-stream-and-lite",
      b"\xff" + h2_request(1, "/machine/map", stream) + h2_request(3, "/machine/map", lite))
write("h2_connection", "control-frames", b"\xff" + b"".join([
    h2_frame(4, 0x1, 0, b""),                                   # SETTINGS ACK
    h2_frame(4, 0, 0, struct.pack(">HI", 4, 1 << 20)),          # INITIAL_WINDOW_SIZE
    h2_frame(8, 0, 0, struct.pack(">I", 1 << 20)),              # WINDOW_UPDATE
    h2_frame(6, 0, 0, b"pingpong"),                             # PING
    h2_request(1, "/stream", b"{}"),
    h2_request(3, "/abort", b"{}"),
    h2_frame(3, 0, 3, struct.pack(">I", 8)),                    # RST_STREAM CANCEL
    h2_frame(7, 0, 0, struct.pack(">II", 3, 0)),                # GOAWAY
]))
# A head split over HEADERS + CONTINUATION, with a padded, prioritised HEADERS.
head = b"".join(h2_literal(n, v) for n, v in [(":method", "POST"), (":scheme", "http"), (":path", "/x")])
write("h2_connection", "continuation", b"\xff" + h2_frame(1, 0x8 | 0x20, 1, b"\x02" + bytes(5) + head[:7] + b"\0\0")
      + h2_frame(9, 0x4, 1, head[7:]) + h2_frame(0, 0x1, 1, b""))
write("h2_connection", "raw-preface", b"\x00" + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))


# --- derp_server: 0x00 + what follows the 101 (a ClientInfo frame that does not open),
#     0x01 + frames after a valid handshake (peers: secrets [2; 32] and [3; 32]).
def derp(kind, payload):
    return bytes([kind]) + struct.pack(">I", len(payload)) + payload


def public(seed):
    return X25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key().public_bytes_raw()


neighbour, stranger = public(2), public(3)
client_info = fixture("derp_clientinfo.json")
write("derp_server", "clientinfo-unsealed", b"\x00" + derp(2, public(4) + bytes(24) + client_info))
write("derp_server", "frames", b"\x01" + b"".join([
    derp(0x07, b"\x01"),                                        # NotePreferred
    derp(0x04, neighbour + b"hello"),                           # SendPacket to a neighbour
    derp(0x04, stranger + b"hello"),                            # to another namespace
    derp(0x04, neighbour + b"TS\xf0\x9f\x92\xac" + bytes(56)),  # a disco packet
    derp(0x12, b"pingping"),                                    # Ping
    derp(0x13, b"pongpong"),                                    # Pong
    derp(0x06, b""),                                            # KeepAlive
    derp(0x10, b""),                                            # WatchConns
    derp(0x11, neighbour),                                      # ClosePeer
    derp(0x0A, public(4) + neighbour + b"fwd"),                 # ForwardPacket
]))

# --- stun: the client's binding request as captured, and one without its FINGERPRINT.
stun = fixture("stun_request.bin")
write("stun", "request", stun)
write("stun", "no-fingerprint", stun[:2] + b"\x00\x0c" + stun[4:32])

# --- front_sniff: selector (read sizes, head cap) + the heads clients send.
HEADS = {
    "ts2021": b"POST /ts2021 HTTP/1.1\r\nHost: example.com\r\nUpgrade: tailscale-control-protocol\r\n"
              b"Connection: upgrade\r\nX-Tailscale-Handshake: "
              + vector["x_tailscale_handshake_header"].encode() + b"\r\n\r\n\x00\x00\x00\x00\x1e",
    "ts2021-absolute": b"POST http://example.com:8080/ts2021?x=1 HTTP/1.1\r\nHost: example.com\r\n"
                       b"Upgrade: websocket, Tailscale-Control-Protocol\r\nConnection: upgrade\r\n\r\n",
    "derp-get": b"GET /derp HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n"
                + derp(2, bytes(8)),
    "derp-post": b"POST /derp HTTP/1.1\r\nhost: example.com\r\nupgrade: derp\r\n\r\n",
    "key": b"GET /key?v=130 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "api": b"PUT /v1/namespaces/a/policy HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
}
for name, head in HEADS.items():
    write("front_sniff", name, b"\xf3" + head)
write("front_sniff", "ts2021-bytewise", b"\xf0" + HEADS["ts2021"])

# --- wire_json: 0 RegisterRequest, 1 MapRequest, 2 Hostinfo, 3 DERP ClientInfo.
for name in ["register_request", "register_restart", "register_logout", "register_rotation"]:
    write("wire_json", name, b"\x00" + fixture(f"{name}.json"))
for name in ["map_request_stream", "map_request_lite", "map_request_lite_with_netinfo"]:
    write("wire_json", name, b"\x01" + fixture(f"{name}.json"))
hostinfo = json.loads(fixture("map_request_lite_with_netinfo.json"))["Hostinfo"]
write("wire_json", "hostinfo", b"\x02" + json.dumps(hostinfo).encode())
write("wire_json", "clientinfo", b"\x03" + client_info)

# --- policy: the README's and the tests' policies.
POLICIES = {
    "full": """// HuJSON: comments and trailing commas
{
  "groups": {"group:admins": ["alice@example.com"], "group:dev": ["bob@example.com", "*@example.com"],},
  "hosts": {"db-net": "10.0.0.0/24", "printer": "192.168.1.5"},
  "tagOwners": {"tag:server": ["group:admins"], "tag:db": ["tag:server", "alice@example.com"]},
  /* block
     comment */
  "acls": [
    {"action": "accept", "src": ["group:admins"], "dst": ["*:*"]},
    {"action": "accept", "src": ["group:dev", "tag:server"], "proto": "tcp", "dst": ["tag:db:5432", "db-net:80,443"]},
    {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*", "100.64.0.0/10:22-23"]},
    {"action": "accept", "src": ["*"], "proto": "icmp", "dst": ["printer:*", "fd7a:115c:a1e0::/48:*"]},
  ],
  "ssh": [
    {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"]},
    {"action": "check", "src": ["group:admins"], "dst": ["tag:server"], "users": ["ubuntu"], "checkPeriod": "12h"},
  ],
  "tests": [
    {"src": "alice@example.com", "accept": ["tag:db:5432"], "deny": ["100.64.0.2:9999"]},
  ],
}
""",
    "readme": """{
  "tagOwners": {"tag:browser": [], "tag:cli": [], "tag:hub-1": []},
  "acls": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]}],
  "ssh": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli"], "users": ["autogroup:nonroot"]}],
}
""",
    "deny-all": '{"acls": []}',
    "allow-all": "{}",
    "bad-tag": '{\n  "acls": [{"action": "accept", "src": ["tag:nope"], "dst": ["*:*"]}]\n}',
    "unterminated": '{ /* "acls": [] ',
}
for name, text in POLICIES.items():
    write("policy", name, text.encode())
