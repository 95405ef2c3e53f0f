"""The `keyplex` binary as an operator starts it: no config, demo tenant, master key sources."""

import base64
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid

import keyplex_proc  # tests/keyplex_proc.py (conftest puts tests/ on sys.path)
from keyplex_proc import free_port


def start(keyplex_bin, cwd, env=None, args=()):
    port = free_port()
    proc = subprocess.Popen(
        [str(keyplex_bin), "serve", "--listen", f"127.0.0.1:{port}", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    keyplex_proc.wait_healthy(proc, base, 30, lambda: proc.stdout.read().decode())
    return proc, base


def stop(proc) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return out.decode()


def cpix(base, user, password, kid, content="cli-1"):
    body = (
        f'<cpix:CPIX contentId="{content}" xmlns:cpix="urn:dashif:org:cpix"><cpix:ContentKeyList>'
        f'<cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList></cpix:CPIX>'
    )
    req = urllib.request.Request(base + "/demo/cpix", data=body.encode(), method="POST")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_no_config_gives_a_demo_tenant_whose_credentials_print_once(keyplex_bin, tmp_path):
    proc, base = start(keyplex_bin, tmp_path)
    out = stop(proc)
    m = re.search(r"user `demo` password `([A-Za-z0-9_-]+)`", out)
    assert m, out
    password = m.group(1)
    assert oct((tmp_path / "keyplex-data" / "master.key").stat().st_mode & 0o777) == "0o600"

    proc, base = start(keyplex_bin, tmp_path)
    kid = str(uuid.uuid4())
    status, first = cpix(base, "demo", password, kid)
    assert status == 200, first
    assert cpix(base, "demo", "wrong", kid)[0] == 401
    out = stop(proc)
    assert password not in out, "the password is printed only on the start that creates it"


def test_master_key_from_environment_and_a_wrong_one_is_refused(keyplex_bin, tmp_path):
    key_a = os.urandom(32).hex()
    proc, base = start(keyplex_bin, tmp_path, {"KEYPLEX_MASTER_KEY": key_a})
    out = stop(proc)
    password = re.search(r"password `([A-Za-z0-9_-]+)`", out).group(1)
    assert not (tmp_path / "keyplex-data" / "master.key").exists()

    kid = str(uuid.uuid4())
    proc, base = start(keyplex_bin, tmp_path, {"KEYPLEX_MASTER_KEY": key_a})
    status, first = cpix(base, "demo", password, kid)
    assert status == 200
    stop(proc)

    # Another master key cannot read the stored key: keyplex refuses to start on this store
    # (rather than answer every request "corrupt", or invent keys), naming the fingerprints.
    other = os.urandom(32).hex()
    refused = subprocess.run(
        [str(keyplex_bin), "serve", "--listen", f"127.0.0.1:{keyplex_proc.free_port()}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "KEYPLEX_MASTER_KEY": other},
    )
    assert refused.returncode != 0
    assert "same master key" in refused.stderr, refused.stderr
    assert other not in refused.stderr and key_a not in refused.stderr

    proc, base = start(keyplex_bin, tmp_path, {"KEYPLEX_MASTER_KEY": key_a})
    status, again = cpix(base, "demo", password, kid)
    stop(proc)
    assert status == 200 and again == first


def test_client_cpix_gives_the_demo_tenant_the_same_key_every_run(keyplex_bin, tmp_path):
    """`keyplex client cpix --content-id X` against the default demo tenant: the same keys on
    every run (the client derives its kids from content, track type and period), other keys
    for another content or period."""
    import json

    proc, base = start(keyplex_bin, tmp_path)
    try:
        out = proc.stdout.readline().decode()
        while "password" not in out:
            out = proc.stdout.readline().decode()
        password = re.search(r"user `demo` password `([A-Za-z0-9_-]+)`", out).group(1)

        def run(*args):
            result = subprocess.run(
                [str(keyplex_bin), "client", "cpix", "--url", f"{base}/demo/cpix", "--user", "demo",
                 "--password", password, "--track-types", "SD,AUDIO", *args],
                capture_output=True, text=True, timeout=60, check=True,
            )
            keys = json.loads(result.stdout)["content_key_list"]
            for key in keys:
                keyplex_proc.saw_key(bytes.fromhex(key["key_hex"]))
            return [(k["key_id"], k["key_hex"]) for k in keys]

        first = run("--content-id", "movie-2")
        assert run("--content-id", "movie-2") == first
        assert first[0] != first[1], "one key per track type"
        assert run("--content-id", "movie-3")[0] != first[0]
        assert run("--content-id", "movie-2", "--period", "7")[0] != first[0]
    finally:
        # Kept as a log, so that the secrets check reads what this server wrote.
        (tmp_path / "keyplex.log").write_text(out + stop(proc))
