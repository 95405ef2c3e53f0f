"""Playback fixtures: keyplex serving the reference players and licences, a static server for
the packaged content (another origin, as a CDN would be), entitlement tokens, and `play`,
which opens a player page in headless Debian Chromium through play.mjs (playwright-core)."""

import base64
import functools
import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keyplex_proc  # noqa: E402  (tests/: shared with tests/python and tests/e2e)
import media_tools  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLAYERS = ROOT / "players" / "dist"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

TENANT = "acme"
USER, PASSWORD = "packager", "s3cret-acme"
LICENCE_SECRET = "browser-tests-entitlement-secret"


def config() -> str:
    return f"""
[server]
players_dir = {json.dumps(str(PLAYERS))}

[tenants.{TENANT}]
basic = [{{ user = "{USER}", password = "{PASSWORD}" }}]
kid_override = true

[tenants.{TENANT}.licence]
jwt = {{ hs256_secret = "{LICENCE_SECRET}" }}
cors_origins = ["*"]
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(contents: list[str], *, secret: str = LICENCE_SECRET, sub: str = "viewer-1",
               expires_in: int = 300) -> str:
    """An HS256 entitlement JWT as the operator's portal signs it."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": sub, "contents": contents,
                                "exp": int(time.time()) + expires_in}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


@pytest.fixture(scope="session", autouse=True)
def prerequisites():
    """Fails early, saying what to install, instead of timing out in a browser."""
    missing = []
    if not (PLAYERS / "index.html").is_file():
        missing.append(f"{PLAYERS} is not built: run players/build.sh")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("playwright-core: run `npm ci` in tests/browser")
    if not CHROMIUM.exists():
        missing.append("chromium: apt-get install -y chromium chromium-driver")
    if shutil.which("node") is None:
        missing.append("node: apt-get install -y nodejs")
    assert not missing, "browser tests cannot run:\n  " + "\n  ".join(missing)


@pytest.fixture(scope="session")
def tools():
    return media_tools.tools()


@pytest.fixture(scope="session")
def clip(tools, tmp_path_factory) -> Path:
    return media_tools.make_clip(tools["ffmpeg"], tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="session")
def keyplex(tmp_path_factory):
    with keyplex_proc.running_keyplex(keyplex_proc.keyplex_bin(), config(),
                                      tmp_path_factory.mktemp("keyplex-browser")) as srv:
        yield srv


@pytest.fixture(scope="session")
def client(keyplex):
    """`keyplex client <command> …` against the test tenant (kid_override: keyplex picks the kids)."""

    def run(command: str, *args: str) -> str:
        result = subprocess.run(
            [str(keyplex["bin"]), "client", command, "--url", f"{keyplex['base']}/{TENANT}/cpix",
             "--user", USER, "--password", PASSWORD, *args],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def _cors_files():
    """scripts/serve-content.py's handler (the one docs/getting-started.md runs), quiet."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_content", ROOT / "scripts" / "serve-content.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Quiet(module.CorsFiles):
        def log_message(self, *args):
            pass

    return Quiet


_CorsFiles = _cors_files()


@pytest.fixture(scope="session")
def cdn(tmp_path_factory):
    """A static server on another loopback port; `root` is its document root."""
    root = tmp_path_factory.mktemp("cdn")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_CorsFiles, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"root": root, "base": f"http://127.0.0.1:{server.server_address[1]}"}
    server.shutdown()
    server.server_close()


@pytest.fixture
def play(keyplex):
    """Opens `/players/<page>` with `fields` in the URL fragment and autoplay; returns
    play.mjs's report (outcome, the page's keyplexReport, the licence/key requests)."""

    # Chromium's singleton socket lives in TMPDIR, and a Unix socket path has ~107 bytes:
    # a short directory of its own, not pytest's deep tmp_path.
    scratch = tempfile.mkdtemp(prefix="kpx-chromium-", dir="/tmp")

    def run(page: str, *, target_time: float = 2.0, timeout_s: float = 20, screenshot=None,
            **fields) -> dict:
        fragment = "&".join(f"{k}={urllib_quote(v)}" for k, v in {**fields, "autoplay": "1"}.items())
        request = {
            "url": f"{keyplex['base']}/players/{page}#{fragment}",
            "watch": [f"/{TENANT}/clearkey/v1/licenses", f"/{TENANT}/hls/v1/keys/"],
            "targetTime": target_time,
            # The clip has 25 frames a second: half of them by target_time at least.
            "minFrames": int(target_time * 12),
            "timeoutMs": int(timeout_s * 1000),
            "screenshot": str(screenshot) if screenshot else None,
            "scratch": scratch,
        }
        proc = subprocess.run(
            ["node", str(HERE / "play.mjs")], input=json.dumps(request), capture_output=True,
            text=True, timeout=timeout_s + 40, cwd=HERE,
            env={**os.environ, "CHROMIUM": str(CHROMIUM)},
        )
        assert proc.returncode == 0 and proc.stdout, f"play.mjs failed:\n{proc.stderr[-3000:]}"
        result = json.loads(proc.stdout)
        for req in result["licenceRequests"]:
            for body in ("requestBody", "responseBody"):
                if req.get(body) is not None:
                    req[body] = base64.b64decode(req[body])
        return result

    yield run
    shutil.rmtree(scratch, ignore_errors=True)


def urllib_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def explain(result: dict) -> str:
    """What a failed playback assertion shows: the page's events and errors, the licence
    requests, the console."""
    report = result.get("report") or {}
    lines = [f"outcome: {result['outcome']}, currentTime: {report.get('currentTime')}, "
             f"decoded frames: {report.get('decodedFrames')}, video: {report.get('video')}",
             "errors: " + json.dumps(report.get("errors"), indent=1)]
    lines += [f"  {e['t']:6.2f} {e['kind']:8} {e['text']}" for e in report.get("events", [])]
    lines += [f"licence request: {r['method']} {r['url']} → {r['status']}" for r in result["licenceRequests"]]
    lines += ["console: " + c for c in result["console"][-30:]]
    lines += ["page error: " + e for e in result["pageErrors"]]
    return "\n".join(lines)


@pytest.fixture(scope="session", autouse=True)
def no_key_in_any_server_log(tmp_path_factory):
    """After the whole session: no server log holds a content key a test received."""
    yield
    keyplex_proc.check_server_logs(tmp_path_factory.getbasetemp(), "browser")
