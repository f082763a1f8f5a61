#!/usr/bin/env python3
"""Independent byte-level check of the rocketmq-store-1 fixture.

Parses the commit log, consume queues, index files and checkpoint written by
the rocketmq-store crate with nothing but the Python standard library, and
cross-checks every record against manifest.json. Exits non-zero on any
mismatch. Usage: check_fixture.py <fixture-dir>
"""
import json
import os
import struct
import sys
import zlib

MAGIC_V1 = 0xDAA320A7
MAGIC_V2 = 0xDAA320AB
BLANK_MAGIC = 0xCBD43194

errors = []


def fail(msg):
    errors.append(msg)
    print("MISMATCH:", msg)


def java_hash(s):
    """Java String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    raw = s.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(">%dH" % (len(raw) // 2), raw):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def index_hash(key):
    h = java_hash(key)
    return 0 if h == -(1 << 31) else abs(h)


def parse_props(raw):
    props = {}
    for pair in raw.split("\x02"):
        if pair:
            k, _, v = pair.partition("\x01")
            props[k] = v
    return props


def main():
    fixture = sys.argv[1]
    store = os.path.join(fixture, "store")
    with open(os.path.join(fixture, "manifest.json")) as f:
        manifest = json.load(f)
    seg = manifest["segment_bytes"]
    msgs = manifest["messages"]
    by_phys = {m["phys_offset"]: m for m in msgs}

    # ---- commit log
    cl_dir = os.path.join(store, "commitlog")
    names = sorted(os.listdir(cl_dir))
    seen = 0
    max_end = 0
    magics = set()
    crc_prop = False
    for name in names:
        data = open(os.path.join(cl_dir, name), "rb").read()
        base = int(name)
        if len(name) != 20 or base % seg != 0 or len(data) != seg:
            fail(f"commitlog file {name}: size {len(data)}")
        pos = 0
        while pos + 8 <= len(data):
            total, magic = struct.unpack_from(">iI", data, pos)
            if total == 0 and magic == 0:
                if any(data[pos:]):
                    fail(f"{name}: non-zero bytes after end of data at {pos}")
                print(f"commitlog {name}: data ends at {pos} (+{base + pos} absolute), zero-filled after")
                break
            if magic == BLANK_MAGIC:
                if total != len(data) - pos or any(data[pos + 8:]):
                    fail(f"{name}: blank record at {pos} total {total}")
                print(f"commitlog {name}: blank record at {pos}, TOTALSIZE={total}")
                break
            magics.add(magic)
            (total, magic, body_crc, queue_id, flag, queue_offset, phys, sys_flag, born_ts) = struct.unpack_from(
                ">iIIiiqqiq", data, pos)
            p = pos + 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8
            born_len = 20 if sys_flag & 0x10 else 8
            born_host = data[p:p + born_len]; p += born_len
            (store_ts,) = struct.unpack_from(">q", data, p); p += 8
            store_len = 20 if sys_flag & 0x20 else 8
            store_host = data[p:p + store_len]; p += store_len
            reconsume, prepared = struct.unpack_from(">iq", data, p); p += 12
            (body_len,) = struct.unpack_from(">i", data, p); p += 4
            body = data[p:p + body_len]; p += body_len
            if magic == MAGIC_V2:
                (topic_len,) = struct.unpack_from(">H", data, p); p += 2
            else:
                topic_len = data[p]; p += 1
            topic = data[p:p + topic_len].decode(); p += topic_len
            (prop_len,) = struct.unpack_from(">H", data, p); p += 2
            props_raw = data[p:p + prop_len].decode(); p += prop_len
            if p - pos != total:
                fail(f"{name}@{pos}: parsed length {p - pos} != TOTALSIZE {total}")
            if "__CRC32#" in props_raw:
                crc_prop = True
            m = by_phys.get(base + pos)
            if m is None:
                fail(f"{name}@{pos}: record not in manifest")
            else:
                checks = {
                    "phys field": (phys, base + pos),
                    "size": (total, m["size"]),
                    "topic": (topic, m["topic"]),
                    "queue_id": (queue_id, m["queue_id"]),
                    "queue_offset": (queue_offset, m["queue_offset"]),
                    "store_ts": (store_ts, m["store_timestamp_ms"]),
                    "body": (body.decode() if "body_utf8" in m else body.hex(), m.get("body_utf8", m.get("body_hex"))),
                    "body_crc": (body_crc, zlib.crc32(body) & 0x7FFFFFFF),
                    "properties": (props_raw, m["properties"]),
                    "flag": (flag, 0), "reconsume": (reconsume, 0), "prepared": (prepared, 0),
                    "sys_flag": (sys_flag, 0),
                    "born_host": (born_host.hex(), "7f0000010000" + "9c40"),
                    "store_host": (store_host.hex(), "7f0000010000" + "2a9f"),
                }
                for k, (got, want) in checks.items():
                    if got != want:
                        fail(f"{name}@{pos} msg {m['index']}: {k} {got!r} != {want!r}")
                props = parse_props(props_raw)
                if props.get("KEYS") != m["keys"] or props.get("TAGS") != m["tags"] or props.get("UNIQ_KEY") != m["uniq_key"]:
                    fail(f"{name}@{pos}: properties {props}")
                seen += 1
            max_end = max(max_end, base + pos + total)
            pos += total
    if seen != len(msgs):
        fail(f"commit log has {seen} records, manifest {len(msgs)}")
    print(f"commitlog: {seen} records, magics {[hex(x) for x in sorted(magics)]}, __CRC32# present: {crc_prop}, "
          f"max offset {max_end}")

    # ---- consume queues
    cq_root = os.path.join(store, "consumequeue")
    cq_bytes = manifest["cq_file_bytes"]
    for t in manifest["topics"]:
        for q in range(t["queues"]):
            want = sorted((m for m in msgs if m["topic"] == t["topic"] and m["queue_id"] == q),
                          key=lambda m: m["queue_offset"])
            d = os.path.join(cq_root, t["topic"], str(q))
            units = []
            for name in sorted(os.listdir(d)):
                data = open(os.path.join(d, name), "rb").read()
                if len(data) != cq_bytes or int(name) != len(units) * 20 and int(name) % cq_bytes:
                    fail(f"cq {d}/{name}: size {len(data)}")
                for off in range(0, len(data), 20):
                    u = struct.unpack_from(">qiq", data, off)
                    if u == (0, 0, 0):
                        if any(data[off:]):
                            fail(f"cq {d}/{name}: data after empty unit at {off}")
                        break
                    units.append(u)
            if len(units) != len(want):
                fail(f"cq {t['topic']}/{q}: {len(units)} units, manifest {len(want)}")
            for n, (u, m) in enumerate(zip(units, want)):
                exp = (m["phys_offset"], m["size"], java_hash(m["tags"]))
                if m["queue_offset"] != n or u != exp:
                    fail(f"cq {t['topic']}/{q} unit {n}: {u} != {exp}")
            print(f"consumequeue {t['topic']}/{q}: {len(units)} units ok")

    # ---- index files
    idx_dir = os.path.join(store, "index")
    slots_n = manifest["index_slots"]
    items_n = manifest["index_items"]
    key_of = {}
    for m in msgs:
        for key in (f"{m['topic']}#U#{m['uniq_key']}", f"{m['topic']}#{m['keys']}", f"{m['topic']}#T#{m['tags']}"):
            key_of.setdefault((m["phys_offset"], index_hash(key)), key)
    total_items = 0
    for name in sorted(os.listdir(idx_dir)):
        data = open(os.path.join(idx_dir, name), "rb").read()
        if len(data) != 40 + slots_n * 4 + items_n * 20:
            fail(f"index {name}: size {len(data)}")
        b_ts, e_ts, b_phy, e_phy, slot_count, idx_count = struct.unpack_from(">qqqqii", data, 0)
        slots = struct.unpack_from(">%di" % slots_n, data, 40)
        items = [struct.unpack_from(">iqii", data, 40 + slots_n * 4 + i * 20) for i in range(items_n)]
        if items[0] != (0, 0, 0, 0):
            fail(f"index {name}: item 0 not empty")
        used = items[1:idx_count]
        # each item: hash of one of the message's keys; prev chain consistent
        heads = {}
        for i, (h, phy, tdiff, prev) in enumerate(used, start=1):
            if (phy, h) not in key_of:
                fail(f"index {name} item {i}: hash {h} phy {phy} matches no key")
            slot = h % slots_n
            if prev != heads.get(slot, 0):
                fail(f"index {name} item {i}: prev {prev} != {heads.get(slot, 0)}")
            heads[slot] = i
            m = by_phys[phy]
            exp_diff = 0 if i == 1 and b_ts == m["store_timestamp_ms"] else (m["store_timestamp_ms"] - b_ts) // 1000
            if tdiff != max(exp_diff, 0):
                fail(f"index {name} item {i}: time diff {tdiff} != {exp_diff}")
        for s in range(slots_n):
            if slots[s] != heads.get(s, 0):
                fail(f"index {name}: slot {s} = {slots[s]} != {heads.get(s, 0)}")
        if slot_count != len(heads):
            fail(f"index {name}: hashSlotCount {slot_count} != {len(heads)} used slots")
        if any(data[40 + slots_n * 4 + idx_count * 20:]):
            fail(f"index {name}: bytes after last item")
        first, last = by_phys[used[0][1]], by_phys[used[-1][1]]
        if (b_phy, e_phy, e_ts) != (first["phys_offset"], last["phys_offset"], last["store_timestamp_ms"]):
            fail(f"index {name}: header phy/ts {(b_phy, e_phy, e_ts)}")
        total_items += len(used)
        print(f"index {name}: begin_ts {b_ts} end_ts {e_ts} begin_phy {b_phy} end_phy {e_phy} "
              f"hashSlotCount {slot_count} indexCount {idx_count} ({len(used)} items)")
    if total_items != 3 * len(msgs):
        fail(f"index items {total_items} != 3 per message")

    # ---- checkpoint
    cp = open(os.path.join(store, "checkpoint"), "rb").read()
    fields = struct.unpack_from(">6q", cp, 0)
    print("checkpoint (%d bytes): physicMsgTimestamp %d, logicsMsgTimestamp %d, indexMsgTimestamp %d, "
          "masterFlushedOffset %d, confirmPhyOffset %d, indexSafePhyOffset %d" % ((len(cp),) + fields))
    last_ts = max(m["store_timestamp_ms"] for m in msgs)
    if fields[0] != last_ts or fields[1] != last_ts or any(cp[48:]):
        fail(f"checkpoint {fields}")
    if os.path.exists(os.path.join(store, "abort")):
        fail("abort file present")

    if errors:
        print(f"{len(errors)} mismatches")
        sys.exit(1)
    print("fixture ok")


if __name__ == "__main__":
    main()
