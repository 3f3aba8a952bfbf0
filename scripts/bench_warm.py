#!/usr/bin/env python3
"""Warms the resolve answer cache for bench.sh: asks for every scope of the resolve view
once (environments x families x tenants), over keep-alive connections from 4 threads.
Prints {"warmed": n, "errors": e, "seconds": s} as JSON.

Usage: bench_warm.py URL FAMILIES TENANTS TOKEN
"""
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse


def main() -> int:
    url, families, tenants, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    u = urlparse(url)
    paths = [f"/v1/resolve?environment={e}&bundle_id=fam-{f:04d}&tenant_id=tenant-{t:02d}"
             for e in ("prod", "stage", "dev") for f in range(families) for t in range(tenants)]
    errors = [0]
    lock = threading.Lock()

    def run(chunk):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        bad = 0
        for p in chunk:
            c.request("GET", p, headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse()
            r.read()
            bad += r.status != 200
        with lock:
            errors[0] += bad

    start = time.time()
    threads = [threading.Thread(target=run, args=(paths[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"warmed": len(paths), "errors": errors[0], "seconds": round(time.time() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
