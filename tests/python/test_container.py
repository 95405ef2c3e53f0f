"""The container files (Dockerfile, compose.yaml, docker/keyplex.toml), tested as far as this
machine can: building an image needs the network it does not have. The binary the image copies
runs with the configuration the image passes it, and the files agree with each other."""

import re
import subprocess
import tomllib
import urllib.request

import keyplex_proc
from conftest import ROOT
from keyplex_proc import free_port


def test_the_image_configuration_serves(keyplex_bin, tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    config_path = ROOT / "docker" / "keyplex.toml"
    config = tomllib.loads(config_path.read_text())
    # The image copies this file where its CMD reads it, runs as a non-root user, keeps the
    # data in the volume the configuration names, and checks /healthz on the port it exposes.
    assert "COPY docker/keyplex.toml /etc/keyplex/keyplex.toml" in dockerfile
    assert '"serve", "--config", "/etc/keyplex/keyplex.toml"' in dockerfile
    assert re.search(r"^USER keyplex$", dockerfile, re.M)
    assert f'VOLUME ["{config["server"]["data_dir"]}"]' in dockerfile
    port = config["server"]["listen"].rsplit(":", 1)[1]
    assert f"EXPOSE {port}" in dockerfile
    assert f"http://127.0.0.1:{port}/healthz" in dockerfile
    compose = (ROOT / "compose.yaml").read_text()
    assert "KEYPLEX_DATABASE_URL: postgres://" in compose and "KEYPLEX_MASTER_KEY" in compose

    # The binary starts with that configuration (its listen address and data directory
    # overridden by flags, as `docker run` would map them).
    local = free_port()
    proc = subprocess.Popen(
        [str(keyplex_bin), "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{local}",
         "--data", str(tmp_path / "data")],
        stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        keyplex_proc.wait_healthy(proc, f"http://127.0.0.1:{local}", 30,
                                  lambda: (tmp_path / "server.log").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
            assert b"keyplex" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
