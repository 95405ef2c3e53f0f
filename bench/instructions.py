#!/usr/bin/env python3
"""Server instructions per request, counted by callgrind: a steady A/B measure on a shared VM.

    bench/instructions.py BINARY SCENARIO [REQUESTS] [--keep FILE]

Starts BINARY (`keyplex serve` with bench/bench.toml and an empty data directory) under
`valgrind --tool=callgrind`, sends 100 warm-up requests of SCENARIO (existing, speke, nagra,
widevine, clearkey: the requests of bench/run.sh), zeroes the counters, sends REQUESTS more
(default 300) one after the other on one keep-alive connection, waits for the audit flush, and
prints the instructions the whole server process executed (every thread: hyper, tokio, the
handler, the key writer's audit rows) divided by REQUESTS. `--keep FILE` keeps the callgrind
profile for `callgrind_annotate`.

Counts do not depend on what else the machine is doing (a build beside it changes nothing),
so two builds compare within ~2 %. They are not CPU time: callgrind runs the program on the
CPU valgrind emulates, which has no SHA extensions or AVX-512, so hashing and some crypto take
their portable paths and count more than they cost natively.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
WARMUP = 100


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret: str, claims: dict) -> str:
    signed = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64url(
        json.dumps(claims).encode())
    return signed + "." + b64url(hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest())


def scenarios() -> dict:
    read = lambda name: open(os.path.join(BENCH, name), "rb").read()
    kid = re.search(r'EXISTING_KID="([0-9a-f-]+)"', read("lib.sh").decode()).group(1)
    existing = read("cpix-request.xml").replace(b"@CONTENT_ID@", b"bench-existing").replace(
        b"@KID@", kid.encode())
    basic = "Basic " + base64.b64encode(b"packager:bench-secret").decode()
    entitlement = "Bearer " + hs256("bench-entitlement-secret-0123456789", {
        "sub": "bench-viewer", "contents": ["bench-existing"], "exp": int(time.time()) + 86400})
    return {
        "existing": ("/bench/cpix", existing, "application/xml", {"Authorization": basic}),
        "speke": ("/bench/speke/v2", read("speke-live-request.xml"), "application/xml",
                  {"Authorization": basic, "X-Speke-Version": "2.0"}),
        "nagra": ("/bench/cks-ws-keyAndSignalization/cmaf", read("nagra-request.json"),
                  "application/json", {"Authorization": basic}),
        "widevine": ("/bench/widevine/getcontentkey", read("widevine-request.json"),
                     "application/json", {}),
        "clearkey": ("/bench/clearkey/v1/licenses", read("clearkey-request.json"),
                     "application/json", {"Authorization": entitlement}),
        "_create": ("/bench/cpix", existing, "application/xml", {"Authorization": basic}),
    }


def main() -> int:
    args = sys.argv[1:]
    keep = None
    if "--keep" in args:
        at = args.index("--keep")
        keep = args[at + 1]
        del args[at:at + 2]
    if len(args) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    binary, scenario = args[0], args[1]
    requests = int(args[2]) if len(args) == 3 else 300
    all_scenarios = scenarios()
    if scenario not in all_scenarios or scenario.startswith("_"):
        print(f"unknown scenario {scenario!r}", file=sys.stderr)
        return 2
    path, body, content_type, headers = all_scenarios[scenario]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tempfile.mkdtemp(prefix="keyplex-instructions.")
    profile = os.path.join(work, "callgrind.out")
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", binary, "serve",
         "--config", os.path.join(BENCH, "bench.toml"), "--data", os.path.join(work, "data"),
         "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=log, env={**os.environ, "KEYPLEX_LOG": "warn"})
    try:
        for _ in range(600):
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                probe.request("GET", "/healthz")
                probe.getresponse().read()
                break
            except OSError:
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def post(spec):
            p, b, ctype, extra = spec
            conn.request("POST", p, body=b, headers={"Content-Type": ctype, **extra})
            answer = conn.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise SystemExit(f"{p} answered {answer.status}: {data[:300]!r}")

        post(all_scenarios["_create"])  # the existing content's key
        for _ in range(WARMUP):
            post(all_scenarios[scenario])
        time.sleep(1.5)  # audit flush and timers of the warm-up
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        for _ in range(requests):
            post(all_scenarios[scenario])
        time.sleep(1.5)  # the measured requests' audit rows are written within the second
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    dumps = [f for f in os.listdir(work) if f.startswith("callgrind.out.")]
    total = 0
    for name in dumps:
        text = open(os.path.join(work, name)).read()
        total += int(re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M).group(1))
        if keep:
            shutil.copy(os.path.join(work, name), keep)
    shutil.rmtree(work)
    print(f"{scenario}: {total / requests:,.0f} instructions per request "
          f"({requests} requests, {os.path.basename(binary)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
