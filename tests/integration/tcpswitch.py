"""A TCP address that moves, as a managed Redis's DNS name does on failover.

It listens on one loopback port and relays each new connection to the
current target; `TARGET host port` on the control socket moves the address
for connections made from then on, while those already open stay with the
node they reached -- exactly what clients see when a DNS name is pointed at
a new master: a reconnect (a new resolve) finds the new node, an open
connection does not. `DROP` closes every open relay (a managed service that
also cuts its clients off), `STATS` reports the target and the counts.

Run as its own process (hafixtures.DnsSwitch starts it) so that a slow test
process never slows the relay, and so that it can be killed like a real
endpoint:

    tcpswitch.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --control PATH

It prints "ready" on stdout once both sockets listen. Control commands are
one line each and get one line back ("OK ..." or "ERR ...").
"""
import argparse
import asyncio
import os
import sys


class Switch:
    def __init__(self, host, port):
        self.target = (host, port)
        self.relays = set()  # the writers of every open relay, both directions
        self.accepted = 0

    async def pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except OSError:
                pass

    async def on_client(self, creader, cwriter):
        self.accepted += 1
        host, port = self.target  # resolved now, as a client resolves a name on connect
        try:
            sreader, swriter = await asyncio.open_connection(host, port)
        except OSError:
            cwriter.close()
            return
        pair = (cwriter, swriter)
        self.relays.add(pair)
        try:
            await asyncio.gather(self.pipe(creader, swriter), self.pipe(sreader, cwriter))
        finally:
            self.relays.discard(pair)

    async def on_control(self, reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            words = line.decode().split()
            if len(words) == 3 and words[0] == "TARGET":
                self.target = (words[1], int(words[2]))
                reply = f"OK {words[1]} {words[2]}"
            elif words == ["DROP"]:
                n = len(self.relays)
                for a, b in list(self.relays):
                    for w in (a, b):
                        try:
                            w.transport.abort()
                        except OSError:
                            pass
                self.relays.clear()
                reply = f"OK dropped {n}"
            elif words == ["STATS"]:
                reply = (f"OK target={self.target[0]}:{self.target[1]} open={len(self.relays)} "
                         f"accepted={self.accepted}")
            else:
                reply = "ERR expected TARGET host port, DROP or STATS"
            writer.write((reply + "\n").encode())
            await writer.drain()
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--control", required=True)
    a = ap.parse_args()
    lhost, lport = a.listen.rsplit(":", 1)
    thost, tport = a.target.rsplit(":", 1)
    sw = Switch(thost, int(tport))
    server = await asyncio.start_server(sw.on_client, lhost, int(lport), reuse_address=True)
    if os.path.exists(a.control):
        os.unlink(a.control)
    control = await asyncio.start_unix_server(sw.on_control, a.control)
    print("ready", flush=True)
    async with server, control:
        await asyncio.gather(server.serve_forever(), control.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
