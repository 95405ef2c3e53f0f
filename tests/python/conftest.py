"""Shared fixtures: a real keyplex binary serving on a free loopback port."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"

CONFIG = """
[tenants.acme]
basic = [{ user = "packager", password = "s3cret-acme" }]
playready_la_url = "https://acme.example/prls/contentlicenseservice/v1/licenses"
widevine_provider = "acme"
sigv4 = [{ access_key_id = "AKIDACMEPY", secret_access_key = "acme-sigv4-secret-for-botocore", region = "us-east-1", service = "execute-api" }]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def keyplex_bin() -> Path:
    path = Path(os.environ.get("KEYPLEX_BIN", ROOT / "target" / "debug" / "keyplex"))
    assert path.exists(), f"build keyplex first (cargo build -p keyplex): {path} missing"
    return path


@pytest.fixture(scope="session")
def server(keyplex_bin, tmp_path_factory):
    data = tmp_path_factory.mktemp("keyplex-data")
    cfg = data / "keyplex.toml"
    cfg.write_text(CONFIG)
    port = free_port()
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen(
        [str(keyplex_bin), "serve", "--config", str(cfg), "--data", str(data), "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("keyplex did not become healthy:\n" + (data / "server.log").read_text())
        time.sleep(0.1)
    yield {"base": base, "log": data / "server.log", "data": data}
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
