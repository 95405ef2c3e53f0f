"""Crash safety: keyplex on SQLite creating keys under load, killed with SIGKILL at random
moments, five times over. After every restart the store opens cleanly and every key a client
received before a kill is returned identically (same key id, key and IV), whether the client
asked by key id (CPIX) or keyplex chose the key id (NAGRA-style JSON).

A key is "received" only when its 200 answer arrived in full: a request cut by the kill may or
may not have created its key, but whatever it created must then be consistent too — asking
again gives one key, never a second one.
"""

import base64
import os
import random
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import keyplex_proc
from test_cluster import nagra_key

CONFIG = """
[tenants.acme]
basic = [{ user = "packager", password = "s3cret-acme" }]
"""
PACKAGER = "Basic " + base64.b64encode(b"packager:s3cret-acme").decode()


def cpix_key(base, content, kid):
    body = (
        f'<cpix:CPIX contentId="{content}" xmlns:cpix="urn:dashif:org:cpix" '
        f'xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><cpix:ContentKeyList>'
        f'<cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList></cpix:CPIX>'
    ).encode()
    req = urllib.request.Request(f"{base}/acme/cpix", data=body, method="POST")
    req.add_header("Authorization", PACKAGER)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return None, None
    value = re.search(r"<pskc:PlainValue>([^<]+)</pskc:PlainValue>", text).group(1)
    keyplex_proc.saw_key(base64.b64decode(value))
    iv = re.search(r'explicitIV="([^"]+)"', text)
    return 200, (value, iv.group(1) if iv else None)


class Server:
    def __init__(self, binary, data):
        self.binary, self.data = binary, data
        self.port = keyplex_proc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (data / "keyplex.toml").write_text(CONFIG)

    def start(self):
        log = open(self.data / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.data / "keyplex.toml"),
             "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "KEYPLEX_MASTER_KEY": "ab" * 32},
        )
        keyplex_proc.wait_healthy(self.proc, self.base, 30,
                                  lambda: (self.data / "server.log").read_text())

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def test_sigkill_during_key_creation_loses_and_changes_nothing(keyplex_bin, tmp_path):
    server = Server(keyplex_bin, tmp_path)
    server.start()
    received_cpix = {}   # (content, kid) -> (key, iv)
    received_nagra = {}  # content -> (kid, key, iv)
    attempted_nagra = set()
    lock = threading.Lock()
    rng = random.Random(7)

    def load(stop, n):
        i = 0
        while not stop.is_set():
            i += 1
            content = f"crash-{n}-{i}-{uuid.uuid4().hex[:6]}"
            if i % 2:
                kid = str(uuid.uuid4())
                status, key = cpix_key(server.base, content, kid)
                if status == 200:
                    with lock:
                        received_cpix[(content, kid)] = key
            else:
                with lock:
                    attempted_nagra.add(content)
                status, key = nagra_key(server.base, content)
                if status == 200:
                    with lock:
                        received_nagra[content] = key

    for round_ in range(5):
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(stop, n)) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.4 + rng.random() * 0.8)
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        # The store opens cleanly (the server becomes healthy) and keeps every received key.
        server.start()
        for (content, kid), key in received_cpix.items():
            assert cpix_key(server.base, content, kid) == (200, key), (round_, content)
        for content, key in received_nagra.items():
            assert nagra_key(server.base, content) == (200, key), (round_, content)

    assert len(received_cpix) > 50 and len(received_nagra) > 50, "the load ran"
    # Requests cut by a kill left at most one key for their content: asking twice agrees.
    for content in sorted(attempted_nagra - set(received_nagra))[:100]:
        first = nagra_key(server.base, content)
        assert first[0] == 200 and nagra_key(server.base, content) == first
    server.kill()
    log = (tmp_path / "server.log").read_text()
    assert "corrupt" not in log.lower(), log[-2000:]
