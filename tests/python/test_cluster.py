"""Three keyplex processes on one PostgreSQL database: the scale-out layout of docs/deployment.md.

Each node is the real binary on its own port and data directory; they share only the database
and the master key (KEYPLEX_MASTER_KEY). The clients below spread their requests over the nodes
as a load balancer would. Checked: concurrent requests for the same contents agree on one key
per (content, track, period) whichever node answers; sessions set up on one node renew, license
and tear down on others; a concurrent-stream limit and single-use tokens hold across nodes; a
credential revoked through one node is refused by the others within seconds; a node killed
with SIGKILL under load loses nothing it acknowledged, and the others keep answering.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

import keyplex_proc

PG_SERVER = os.environ.get("KEYPLEX_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
ADMIN_TOKEN = "cluster-admin-token-" + "0123456789abcdef"
LICENCE_SECRET = "cluster-licence-secret-0123456789abcdef"
ONCE_SECRET = "cluster-single-use-secret-0123456789abcdef"
PACKAGER = "Basic " + base64.b64encode(b"packager:s3cret-acme").decode()


def psql(sql: str) -> None:
    # DROP DATABASE waits for a checkpoint: with the integration suite's hundred databases
    # written just before, on a loaded two-core machine, that took over a minute once.
    subprocess.run(["psql", PG_SERVER, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                   check=True, capture_output=True, timeout=300)


def config(database_url: str) -> str:
    return f"""
[server]
database_url = "{database_url}"

[admin]
token = "{ADMIN_TOKEN}"

[tenants.acme]
basic = [{{ user = "packager", password = "s3cret-acme" }}]
crypto_period_seconds = 60

[tenants.acme.licence]
jwt = {{ hs256_secret = "{LICENCE_SECRET}" }}
heartbeat_seconds = 30

[tenants.once]
basic = [{{ user = "packager", password = "s3cret-once" }}]

[tenants.once.licence]
jwt = {{ hs256_secret = "{ONCE_SECRET}" }}
replay_protection = true
"""


class Node:
    """One `keyplex serve` process of the cluster (restartable, killable)."""

    def __init__(self, binary, data, cfg, env):
        self.binary, self.data, self.cfg, self.env = binary, data, cfg, env
        self.port = keyplex_proc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.cfg), "--data", str(self.data),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        keyplex_proc.wait_healthy(self.proc, self.base, 30,
                                  lambda: (self.data / "server.log").read_text())

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def cluster(keyplex_bin, tmp_path_factory):
    name = "keyplex_cluster_test_" + secrets.token_hex(5)
    psql(f"CREATE DATABASE {name}")
    database_url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    root = tmp_path_factory.mktemp("cluster")
    cfg = root / "keyplex.toml"
    cfg.write_text(config(database_url))
    env = {"KEYPLEX_MASTER_KEY": secrets.token_hex(32)}
    # The schema is brought up to date before the nodes start, as a deployment does.
    subprocess.run([str(keyplex_bin), "migrate", "--database-url", database_url],
                   check=True, capture_output=True, timeout=60)
    nodes = [Node(keyplex_bin, root / f"node-{i}", cfg, env) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        yield {"nodes": nodes, "database_url": database_url, "env": env, "root": root}
    finally:
        for node in nodes:
            node.stop()
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def call(base, method, path, body=None, headers=None, timeout=15):
    """(status, parsed JSON or raw bytes); (None, error) when the node does not answer."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method)
    if body is not None and not isinstance(body, bytes):
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    except OSError as e:
        return None, str(e)
    return status, (json.loads(raw) if raw and "json" in ctype else raw)


def nagra_body(content, timestamp=None):
    body = {"drmContent": {"drmContentId": content, "profile": {"distributionMode": "VOD"}}}
    if timestamp is not None:
        body["scheduledKey"] = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))}
    return body


# acme rotates keys every 60 s, and a request without a timestamp gets the key of *now*: the
# tests pin one moment so that asking again later (after a minute boundary) means the same key.
PINNED_TIME = int(time.time())


def nagra_key(base, content, timestamp=PINNED_TIME, tenant="acme", auth=PACKAGER):
    status, v = call(base, "POST", f"/{tenant}/cks-ws-keyAndSignalization/key",
                     nagra_body(content, timestamp), {"Authorization": auth})
    if status != 200:
        return status, None
    ck = v["contentKey"]
    keyplex_proc.saw_key(base64.b64decode(ck["keyValue"]))
    return status, (ck["keyId"], ck["keyValue"], ck["iv"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def entitlement(secret, **claims):
    """An HS256 entitlement token (RFC 7519), made with the standard library only."""
    claims.setdefault("exp", int(time.time()) + 600)
    signing_input = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def admin(base, method, path, body=None):
    return call(base, method, path, body, {"Authorization": f"Bearer {ADMIN_TOKEN}"})


def test_concurrent_requests_over_three_nodes_make_one_key_per_slot(cluster):
    nodes = cluster["nodes"]
    run = uuid.uuid4().hex[:6]
    contents = [f"cluster-{run}-{i}" for i in range(10)]
    # Three 60-second key periods: the pinned moment's, and two after a boundary ten minutes on.
    boundary = PINNED_TIME // 60 * 60 + 600
    moments = [PINNED_TIME, boundary + 1, boundary + 61]
    jobs = [(nodes[n % 3].base, contents[n % 10], moments[(n // 10) % 3]) for n in range(200)]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda j: (j, nagra_key(*j)), jobs))

    by_slot = {}
    for (base, content, moment), (status, key) in answers:
        assert status == 200, f"{base} {content} {moment}: {status}"
        by_slot.setdefault((content, moment), set()).add(key)
    assert len(by_slot) == 30
    for slot, keys in by_slot.items():
        assert len(keys) == 1, f"{slot}: {len(keys)} different keys"
    assert len({next(iter(k))[0] for k in by_slot.values()}) == 30, "every slot has its own key id"

    # The store holds exactly one key per (track, period) of each content, whichever node asks.
    for i, content in enumerate(contents):
        status, listed = admin(nodes[i % 3].base, "GET", f"/admin/v1/tenants/acme/contents/{content}/keys")
        assert status == 200, listed
        slots = [(k.get("track_type"), k.get("period")) for k in listed["keys"]]
        assert len(slots) == 3 and len(set(slots)) == 3, listed

    # The dashboard of any node counts the requests all three answered (each node adds its
    # counts to the database every 2 seconds).
    deadline = time.time() + 8
    while True:
        status, stats = admin(nodes[1].base, "GET", "/admin/v1/stats?tenant=acme&window=300")
        assert status == 200, stats
        created = stats["totals"]["keys_created"].get("nagra", 0)
        requested = stats["totals"]["key_requests"].get("nagra", 0)
        if (created >= 30 and requested >= 200) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert stats["totals"]["key_requests"].get("nagra", 0) >= 200, stats["totals"]
    assert created >= 30, stats["totals"]


def test_sessions_move_between_nodes_and_the_stream_limit_holds_across_them(cluster):
    a, b, c = (n.base for n in cluster["nodes"])
    content = f"session-{uuid.uuid4().hex[:6]}"
    status, key = nagra_key(a, content)
    assert status == 200
    kid_b64url = b64url(uuid.UUID(key[0]).bytes)
    user = f"viewer-{uuid.uuid4().hex[:6]}"
    token = entitlement(LICENCE_SECRET, sub=user, contents=[content], max_streams=2)
    bearer = {"Authorization": f"Bearer {token}"}

    # Nine setups at once, three per node, for a user allowed two streams: exactly two open.
    with ThreadPoolExecutor(max_workers=9) as pool:
        setups = list(pool.map(
            lambda base: call(base, "POST", "/acme/ssm/v1/sessions/setup", b"", bearer),
            [a, b, c] * 3))
    opened = [v["sessionId"] for s, v in setups if s == 201]
    assert len(opened) == 2, setups
    # Session ids are bearer secrets: the secrets check makes sure no log holds one.
    for s in opened:
        keyplex_proc.saw_secret(s)
    assert sorted(s for s, _ in setups).count(403) == 7, setups

    # Set up on A (above), licensed on B, heartbeat on C, torn down on A.
    session = opened[0]
    request = base64.b64encode(json.dumps({"kids": [kid_b64url], "type": "temporary"}).encode()).decode()
    status, v = call(b, "POST", f"/acme/ssm/v1/sessions/{session}/licence",
                     {"keySystem": "org.w3.clearkey", "payload": request, "requestType": "license-request"})
    assert status == 200, v
    licence = json.loads(base64.b64decode(v["licence"]))
    assert licence["keys"][0]["kid"] == kid_b64url
    assert base64.urlsafe_b64decode(licence["keys"][0]["k"] + "==") == base64.b64decode(key[1])
    status, beat = call(c, "POST", f"/acme/ssm/v1/sessions/{session}/heartbeat", b"")
    assert status == 200, beat
    status, _ = call(a, "DELETE", f"/acme/ssm/v1/sessions/{session}")
    assert status == 204
    status, _ = call(b, "POST", f"/acme/ssm/v1/sessions/{session}/heartbeat", b"")
    assert status == 404

    # The freed stream can be taken again, through yet another node.
    status, v = call(c, "POST", "/acme/ssm/v1/sessions/setup", b"", bearer)
    assert status == 201, v


def test_a_single_use_token_is_spent_on_every_node(cluster):
    a, b, c = (n.base for n in cluster["nodes"])
    content = f"once-{uuid.uuid4().hex[:6]}"
    status, key = nagra_key(a, content, tenant="once",
                            auth="Basic " + base64.b64encode(b"packager:s3cret-once").decode())
    assert status == 200
    token = entitlement(ONCE_SECRET, sub="viewer", contents=[content], jti=uuid.uuid4().hex)
    body = {"kids": [b64url(uuid.UUID(key[0]).bytes)], "type": "temporary"}
    bearer = {"Authorization": f"Bearer {token}"}
    # The same token presented to all three nodes at once: one licence.
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = sorted(s for s, _ in pool.map(
            lambda base: call(base, "POST", "/once/clearkey/v1/licenses", body, bearer), [a, b, c]))
    assert statuses == [200, 401, 401], statuses


def test_credentials_changed_through_one_node_apply_on_the_others_within_seconds(cluster):
    a, b, c = (n.base for n in cluster["nodes"])
    tenant = f"t{uuid.uuid4().hex[:8]}"
    assert admin(a, "POST", "/admin/v1/tenants", {"id": tenant})[0] == 201
    status, cred = admin(a, "POST", f"/admin/v1/tenants/{tenant}/credentials",
                         {"type": "basic", "user": "enc", "password": "a-long-password-1"})
    assert status == 201, cred
    auth = "Basic " + base64.b64encode(b"enc:a-long-password-1").decode()

    def status_on(base):
        return nagra_key(base, "movie", tenant=tenant, auth=auth)[0]

    def within(seconds, predicate):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return predicate()

    assert within(6, lambda: status_on(b) == 200 and status_on(c) == 200)
    started = time.time()
    assert admin(a, "DELETE", f"/admin/v1/tenants/{tenant}/credentials/{cred['id']}")[0] == 204
    assert status_on(a) == 401, "refused at once on the node that revoked it"
    assert within(6, lambda: status_on(b) == 401 and status_on(c) == 401)
    assert time.time() - started < 6


def test_a_node_killed_under_load_loses_nothing_it_acknowledged(cluster):
    nodes = cluster["nodes"]
    victim = nodes[2]
    acknowledged = {}
    failures = []
    stop = threading.Event()
    lock = threading.Lock()
    run = uuid.uuid4().hex[:6]

    def client(n):
        i = 0
        while not stop.is_set():
            content = f"load-{run}-{n}-{i}"
            i += 1
            base = nodes[(n + i) % 3].base
            status, key = nagra_key(base, content)
            if status == 200:
                with lock:
                    acknowledged[content] = key
            elif status is None and base == victim.base:
                continue  # the killed node: the connection fails, nothing was acknowledged
            else:
                failures.append((base, content, status))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    victim.kill()
    killed_at = len(acknowledged)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)

    assert not failures, failures[:5]
    assert killed_at > 20, "the load ran before the kill"
    assert len(acknowledged) > killed_at + 20, "the surviving nodes kept answering"

    # Every acknowledged key is there, unchanged, on the survivors and on the restarted node.
    victim.start()
    for n, (content, key) in enumerate(sorted(acknowledged.items())):
        base = nodes[n % 3].base
        assert nagra_key(base, content) == (200, key), content
