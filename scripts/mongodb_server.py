#!/usr/bin/env python3
"""Runs a MongoDB-wire-compatible test server (SecantusDB) until SIGTERM.

The mongodb store's tests use it through `scripts/mongodb-server.sh`, and the
fault test starts its own instance to stop and restart it. The TTL monitor
sweeps every second (mongod's default is 60 s), so tests of server-side
expiry finish quickly.

Usage:
    python scripts/mongodb_server.py --storage-path DIR [--port N] [--port-file FILE]

With `--port 0` (the default) the OS picks a free port; the port actually
bound is written to `--port-file` (atomically, once the server listens).
"""

import argparse
import logging
import os
import signal
import sys
import threading

from secantus import SecantusDBServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--port-file")
    parser.add_argument("--ttl-sweep-seconds", type=float, default=1.0)
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    stopping = threading.Event()

    def request_stop(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    os.makedirs(args.storage_path, exist_ok=True)
    server = SecantusDBServer(
        host=args.host,
        port=args.port,
        storage_path=args.storage_path,
        ttl_sweep_seconds=args.ttl_sweep_seconds,
    )
    server.start()
    host, port = server.address
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"mongodb test server listening on {host}:{port}", file=sys.stderr, flush=True)

    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    print("mongodb test server stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
