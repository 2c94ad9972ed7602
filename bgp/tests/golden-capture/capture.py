#!/usr/bin/env python3
"""Minimal BGP listener: accepts one connection, answers OPEN/KEEPALIVE, records every
message the peer sends as hex lines 'TYPE HEX' for SECONDS seconds."""
import socket, struct, sys, time
addr, my_as, out, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
mode = sys.argv[5] if len(sys.argv) > 5 else "ok"
def msg(t, body): return b'\xff'*16 + struct.pack('!HB', 19+len(body), t) + body
caps = bytes([1,4,0,1,0,1, 1,4,0,2,0,1, 2,0, 65,4]) + struct.pack('!I', my_as)
param = bytes([2, len(caps)]) + caps
as2 = my_as if my_as < 65536 else 23456
if mode == "badas": as2 = 64999; caps = caps[:-4] + struct.pack('!I', 64999); param = bytes([2,len(caps)])+caps
hold = 90 if mode != "badhold" else 2
open_body = struct.pack('!BHHIB', 4, as2, hold, 0xc6120002, len(param)) + param
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, 179)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(0.5)
buf = b''; sent_open = False; lines = []
end = time.time() + seconds
while time.time() < end:
    try:
        d = c.recv(65536)
        if not d: break
        buf += d
    except socket.timeout:
        pass
    while len(buf) >= 19:
        l = struct.unpack('!H', buf[16:18])[0]
        if len(buf) < l: break
        m, buf = buf[:l], buf[l:]
        lines.append(f"{m[18]} {m.hex()}")
        if m[18] == 1 and not sent_open:
            c.sendall(msg(1, open_body)); sent_open = True
            if mode == "ok": c.sendall(msg(4, b''))
        if m[18] == 4 and mode == "ok": c.sendall(msg(4, b''))
        if m[18] == 3: end = 0
if mode == "ok":
    # ask for a route refresh of IPv4 to capture the re-sent UPDATEs too
    pass
open(out, 'w').write('\n'.join(lines) + '\n')
