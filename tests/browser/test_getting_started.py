"""docs/getting-started.md, run: every shell block of the guide, in order, as written — only the
clone's location and the two ports are put in (the guide's 8080 and 8000 may be taken here;
KEYPLEX_URL tells `keyplex admin` and `keyplex audit` the port they would assume) —
with `keyplex`, `packager` and `ffmpeg` on the PATH as the guide asks. The address the guide
prints is opened in headless Chromium, and the video must play with keyplex's ClearKey licence.
The server's output is kept as a log for the secrets check."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import keyplex_proc
import media_tools
from conftest import CHROMIUM, HERE, ROOT, explain
from keyplex_proc import free_port

GUIDE = ROOT / "docs" / "getting-started.md"


def blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)


def test_every_command_of_the_getting_started_guide(tmp_path):
    keyplex_port, cdn_port = free_port(), free_port()
    steps = []
    for block in blocks():
        block = block.replace("export KEYPLEX_REPO=~/src/keyplex", f"export KEYPLEX_REPO={ROOT}")
        block = block.replace("127.0.0.1:8080", f"127.0.0.1:{keyplex_port}")
        block = block.replace("127.0.0.1%3A8080", f"127.0.0.1%3A{keyplex_port}")
        block = block.replace("127.0.0.1%3A8000", f"127.0.0.1%3A{cdn_port}")
        block = block.replace("serve-content.py\" out 8000", f"serve-content.py\" out {cdn_port}")
        steps.append(block)
    assert len(steps) == 7, f"the guide has {len(steps)} shell blocks; this test knows 7"
    serve, cpix, tenant, package, cdn, token, audit = steps

    # What the guide asks to have on the PATH.
    tools = media_tools.tools()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "keyplex").symlink_to(keyplex_proc.keyplex_bin())
    (bin_dir / "packager").symlink_to(tools["packager"])
    (bin_dir / "ffmpeg").symlink_to(tools["ffmpeg"])
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for name in ("KEYPLEX_ADMIN_TOKEN", "KEYPLEX_CONFIG", "NO_COLOR"):
        env.pop(name, None)
    # `keyplex admin` and `keyplex audit` default to the guide's port, 8080.
    env["KEYPLEX_URL"] = f"http://127.0.0.1:{keyplex_port}"

    def run(script: str) -> str:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-3000:]}"
        return result.stdout

    background = []
    server_log = open(tmp_path / "getting-started-server.log", "wb")
    try:
        background.append(subprocess.Popen(["bash", "-euo", "pipefail", "-c", serve], env=env,
                                           stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True))
        keyplex_proc.wait_healthy(background[0], f"http://127.0.0.1:{keyplex_port}", 60,
                                  lambda: (tmp_path / "getting-started-server.log").read_text())

        answer = run(cpix)
        assert "<pskc:PlainValue>" in answer and "explicitIV" in answer, answer
        run(tenant)
        run(package)
        assert (home / "keyplex-try" / "out" / "movie-1" / "manifest.mpd").exists()

        background.append(subprocess.Popen(["bash", "-euo", "pipefail", "-c", cdn], env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True))
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{cdn_port}/movie-1/manifest.mpd", timeout=2).close()
                break
            except OSError:
                assert time.time() < deadline, "the guide's content server did not come up"
                time.sleep(0.2)

        url = run(token).strip().splitlines()[-1]
        assert url.startswith(f"http://127.0.0.1:{keyplex_port}/players/shaka.html#"), url
        scratch = tempfile.mkdtemp(prefix="kpx-guide-", dir="/tmp")
        try:
            request = {"url": url, "watch": ["/shop/clearkey/v1/licenses"], "targetTime": 2.0,
                       "minFrames": 24, "timeoutMs": 30000, "screenshot": None, "scratch": scratch}
            proc = subprocess.run(["node", str(HERE / "play.mjs")], input=json.dumps(request),
                                  capture_output=True, text=True, timeout=90, cwd=HERE,
                                  env={**os.environ, "CHROMIUM": str(CHROMIUM)})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        assert proc.returncode == 0 and proc.stdout, proc.stderr[-3000:]
        result = json.loads(proc.stdout)
        assert result["outcome"] == "played", explain(result)
        assert any(r["status"] == 200 for r in result["licenceRequests"]), explain(result)

        trail = run(audit)
        for action in ("key.created", "key.delivered", "licence.granted"):
            assert action in trail, trail
    finally:
        for proc in background:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)
        server_log.close()
