#!/usr/bin/env python3
"""Records what real clients send and get: a TCP proxy in front of a name
server and a broker (both on loopback) that writes every client-to-server
byte stream to OUT/<n>-<ns|broker>.bin and every answer stream to
OUT/<n>-<ns|broker>-answers.bin (as the server sent it), and rewrites the broker's address in the
name server's answers (route bodies) to the proxy's, so the client's broker
traffic goes through the proxy too. Used once to make the fuzz seeds of
protocol/fuzz (see its README.md):

    capture.py NAMESRV_ADDR BROKER_ADDR OUT_DIR  # prints the proxy's name server
"""
import os, socket, struct, sys, threading

ns_real, br_real, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)

def addr(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)

def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s

ns_l, br_l = listen(), listen()
br_proxy = "127.0.0.1:%d" % br_l.getsockname()[1]
count = [0]
lock = threading.Lock()

def rewrite(frames_buf):
    """Whole frames from the front of the buffer, broker address rewritten."""
    out_b, at = b"", 0
    while len(frames_buf) - at >= 4:
        (total,) = struct.unpack(">i", frames_buf[at:at + 4])
        if len(frames_buf) - at - 4 < total:
            break
        frame = frames_buf[at + 4:at + 4 + total]
        (ht,) = struct.unpack(">I", frame[:4])
        hlen = ht & 0xFFFFFF
        header, body = frame[4:4 + hlen], frame[4 + hlen:]
        body = body.replace(br_real.encode(), br_proxy.encode())
        new = struct.pack(">I", ht) + header + body
        out_b += struct.pack(">i", len(new)) + new
        at += 4 + total
    return out_b, frames_buf[at:]

def pump(src, dst, record, rewrite_answers=False):
    pending = b""
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            if record is not None:
                record.write(b)
                record.flush()
            if rewrite_answers:
                pending += b
                whole, pending = rewrite(pending)
                dst.sendall(whole)
            else:
                dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(l, real, kind):
    while True:
        c, _ = l.accept()
        u = socket.create_connection(addr(real))
        with lock:
            count[0] += 1
            n = count[0]
        rec = open(os.path.join(out, "%03d-%s.bin" % (n, kind)), "wb")
        ans = open(os.path.join(out, "%03d-%s-answers.bin" % (n, kind)), "wb")
        threading.Thread(target=pump, args=(c, u, rec), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, ans, kind == "ns"), daemon=True).start()

threading.Thread(target=serve, args=(ns_l, ns_real, "ns"), daemon=True).start()
threading.Thread(target=serve, args=(br_l, br_real, "broker"), daemon=True).start()
print("127.0.0.1:%d" % ns_l.getsockname()[1], flush=True)
threading.Event().wait()
