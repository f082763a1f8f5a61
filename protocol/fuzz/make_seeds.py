#!/usr/bin/env python3
"""Writes the fuzz seeds of protocol/fuzz (seeds/<target>/) from the
captured client traffic (captures/, recorded with capture.py; and
protocol/tests/captures/) and, where no client sent such bytes, from the
formats by hand: binary headers (converted from the captured JSON ones),
batch bodies, register bodies, HA streams. Rerun after adding captures:

    python3 protocol/fuzz/make_seeds.py
"""
import glob, json, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
CAPS = sorted(glob.glob(os.path.join(HERE, "captures", "*", "*.bin"))) + sorted(
    glob.glob(os.path.join(HERE, "..", "tests", "captures", "*.bin")))

def frames(b):
    at = 0
    while len(b) - at >= 8:
        (total,) = struct.unpack(">i", b[at:at + 4])
        if total < 4 or len(b) - at - 4 < total:
            break
        fr = b[at + 4:at + 4 + total]
        (ht,) = struct.unpack(">I", fr[:4])
        hl = ht & 0xFFFFFF
        yield b[at:at + 4 + total], ht >> 24, fr[4:4 + hl], fr[4 + hl:]
        at += 4 + total

LANGS = ["JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER",
         "HTTP", "GO", "PHP", "OMS", "RUST", "NODE_JS"]

def binary_header(j):
    """RocketMQ's binary header for a decoded JSON header."""
    lang = j.get("language", 0)
    if isinstance(lang, str):
        lang = LANGS.index(lang) if lang in LANGS else 7
    remark = (j.get("remark") or "").encode()
    ext = b""
    for k, v in sorted((j.get("extFields") or {}).items()):
        k, v = str(k).encode(), (v if isinstance(v, str) else json.dumps(v)).encode()
        ext += struct.pack(">h", len(k)) + k + struct.pack(">i", len(v)) + v
    return (struct.pack(">hBhii", int(j.get("code", 0)), lang,
                        min(int(j.get("version", 0)), 32767), int(j.get("opaque", 0)),
                        int(j.get("flag", 0)))
            + struct.pack(">i", len(remark)) + remark + struct.pack(">i", len(ext)) + ext)

def frame_of(ser, header, body):
    return struct.pack(">iI", 4 + len(header) + len(body), (ser << 24) | len(header)) + header + body

def fields_input(ext):
    """ext fields in the `headers` target's input format."""
    parts = []
    for k, v in sorted(ext.items()):
        parts += [str(k).encode(), (v if isinstance(v, str) else json.dumps(v)).encode()]
    return b"\xff".join(parts)

out = {}
def put(target, name, data):
    out.setdefault(target, {})[name] = data

seen = set()
for path in CAPS:
    client = os.path.basename(os.path.dirname(path))
    if client == "captures":
        client = os.path.basename(path).split("-get")[0]
    kind = os.path.basename(path)[:-4].split("-", 1)[-1]  # ns, broker, ns-answers, ...
    for raw, ser, header, body in frames(open(path, "rb").read()):
        if ser != 0:
            continue
        j = json.loads(header)
        code, flag = j.get("code"), j.get("flag", 0)
        key = (client, kind, code, flag)
        if key in seen:
            continue
        seen.add(key)
        name = "%s-%s-code%s-flag%s" % (client, kind, code, flag)
        put("frame", name, raw)
        put("frame", name + "-binary", frame_of(1, binary_header(j), body))
        put("header_json", name, header)
        put("header_binary", name, binary_header(j))
        if j.get("extFields"):
            put("headers", name, fields_input(j["extFields"]))
        if code == 34 and flag & 1 == 0:
            put("heartbeat", name, body)
        if kind == "ns-answers" and body.startswith(b"{"):
            put("route", name, body)

# Batch bodies: MessageDecoder.encodeMessages.
def entry(body, props, flag=0):
    n = 4 + 4 + 4 + 4 + 4 + len(body) + 2 + len(props)
    return struct.pack(">iiiii", n, 0, 0, flag, len(body)) + body + struct.pack(">h", len(props)) + props
put("batch", "two-messages", entry(b"hello", b"KEYS\x01k1\x02TAGS\x01TagA\x02") + entry(b"world", b""))
put("batch", "one-empty-body", entry(b"", b"UNIQ_KEY\x01AC11000100002A9F0000000000000000\x02", 7))
put("batch", "cut-short", entry(b"hello", b"")[:-3])

# Register bodies, as a broker announces its topics.
put("register", "two-topics", json.dumps({
    "dataVersion": {"counter": 2, "timestamp": 1733000000000},
    "topicConfigTable": {
        t: {"order": False, "perm": 6, "readQueueNums": 4, "topicFilterType": "SINGLE_TAG",
            "topicName": t, "topicSysFlag": 0, "writeQueueNums": 4}
        for t in ("TopicA", "%RETRY%GroupA")}}).encode())

# HA streams: the first byte is the read size - 1.
put("ha_report", "reports", bytes([2]) + b"".join(struct.pack(">q", o) for o in (0, 4096, 8192, 1 << 40)))
put("ha_report", "negative", bytes([7]) + struct.pack(">q", 64) + struct.pack(">q", -1))
def transfer(off, body):
    return struct.pack(">qi", off, len(body)) + body
put("ha_transfer", "transfers", bytes([4]) + transfer(0, b"\x00" * 40) + transfer(40, b"") + transfer(40, b"record" * 20))
put("ha_transfer", "bad-size", bytes([0]) + transfer(0, b"ab") + struct.pack(">qi", 2, -5))

if os.path.isdir(SEEDS):
    shutil.rmtree(SEEDS)
for target, seeds in sorted(out.items()):
    d = os.path.join(SEEDS, target)
    os.makedirs(d)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%-14s %3d seeds" % (target, len(seeds)))
