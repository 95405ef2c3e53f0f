"""The real keyplex binary as a child process for the Python test suites (tests/python,
tests/e2e, tests/browser): a free loopback port, a fresh data directory, and a wait for
/healthz. Each suite's conftest puts this directory on sys.path and imports it."""

import os
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Every server these suites start logs keyplex's own debug events, so that the secrets check
# (`saw_key`, tests/python/conftest.py) reads the most a server would ever write.
os.environ.setdefault("KEYPLEX_LOG", "info,keyplex=debug,keyplex_server=debug,keyplex_store=debug")

# Raw content keys the tests received from servers; no server log may contain any of them.
SEEN_KEYS: set[bytes] = set()

# With KEYPLEX_SECRETS_AUDIT_DIR set (scripts/test.sh sets it), the secrets each suite saw and
# the logs of its servers are also kept there, for the check over the whole test run
# (scripts/check-secrets.py, which reads the Rust integration tests' records too).
AUDIT_DIR = os.environ.get("KEYPLEX_SECRETS_AUDIT_DIR")
SECRET_NAMES = ("password", "secret", "token", "signing_key", "aes_key")


def _record(lines: list[str]) -> None:
    if not AUDIT_DIR or not lines:
        return
    Path(AUDIT_DIR).mkdir(parents=True, exist_ok=True)
    with open(Path(AUDIT_DIR) / f"py-{os.getpid()}.secrets", "a") as f:
        f.write("".join(line + "\n" for line in lines))


def saw_secret(text: str) -> None:
    """Records a secret a test received from a server (a session id, a generated token)."""
    if len(text) >= 8:
        _record([f"text:{text}"])


def saw_key(raw: bytes) -> None:
    """Records a content key a server answered (16 raw bytes)."""
    if len(raw) == 16:
        SEEN_KEYS.add(bytes(raw))
        _record([f"hex:{bytes(raw).hex()}"])


def record_config_secrets(config: str) -> None:
    """Records the secrets of a server configuration (TOML text): every string of at least
    8 characters under a key that names a secret, at any depth."""
    import tomllib
    found: list[str] = []

    def walk(value, name: str) -> None:
        if isinstance(value, str):
            if any(s in name for s in SECRET_NAMES) and len(value) >= 8:
                found.append(f"text:{value}")
        elif isinstance(value, list):
            for v in value:
                walk(v, name)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)

    try:
        walk(tomllib.loads(config), "")
    except tomllib.TOMLDecodeError:
        return
    _record(found)


def check_server_logs(basetemp: Path, suite: str) -> None:
    """At the end of a suite: no server log written under its temporary directories holds a
    content key it received (hex, base64 or base64url). With the audit directory set, the
    logs are copied there for the check over the whole run."""
    import shutil
    logs = list(Path(basetemp).rglob("*.log"))
    if AUDIT_DIR:
        dest = Path(AUDIT_DIR) / f"{suite}-{os.getpid()}"
        dest.mkdir(parents=True, exist_ok=True)
        for i, log in enumerate(logs):
            shutil.copyfile(log, dest / f"{i:04}-{log.name}")
    if not SEEN_KEYS:
        return
    spellings = {s: raw for raw in SEEN_KEYS for s in key_spellings(raw)}
    assert logs, "the check must read server logs"
    for log in logs:
        text = log.read_text(errors="replace")
        leaked = [s for s in spellings if s in text]
        assert not leaked, f"{log}: contains a content key ({len(leaked)} spellings)"


def key_spellings(raw: bytes) -> list[str]:
    """The ways a 16-byte key could appear in text: hex (both cases), base64, base64url."""
    import base64
    b64 = base64.b64encode(raw).decode()
    return [raw.hex(), raw.hex().upper(), b64, b64.rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("=")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keyplex_bin() -> Path:
    """The binary under test: $KEYPLEX_BIN, else target/debug/keyplex."""
    path = Path(os.environ.get("KEYPLEX_BIN", ROOT / "target" / "debug" / "keyplex"))
    assert path.exists(), f"build keyplex first (cargo build -p keyplex): {path} missing"
    return path


def wait_healthy(proc: subprocess.Popen, base: str, timeout: float, output) -> None:
    """Waits until `base`/healthz answers 200; raises with `output()` (the server's
    output so far) when the process exits or `timeout` seconds pass first."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            if proc.poll() is None:
                proc.kill()
            raise RuntimeError(f"keyplex did not become healthy on {base}:\n" + output())
        time.sleep(0.1)


@contextmanager
def running_keyplex(binary: Path, config: str, data: Path, *, port: int | None = None,
                    env: dict | None = None, timeout: float = 30):
    """Starts `keyplex serve` with `config` (TOML text) in `data` and yields
    `{"base", "port", "log", "data", "bin"}` once /healthz answers 200; stops it afterwards.
    The server's output goes to `data/server.log` (shown when it does not come up)."""
    data.mkdir(parents=True, exist_ok=True)
    record_config_secrets(config)
    cfg = data / "keyplex.toml"
    cfg.write_text(config)
    port = port or free_port()
    log_path = data / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(cfg), "--data", str(data),
             "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(proc, base, timeout, lambda: log_path.read_text())
            yield {"base": base, "port": port, "log": log_path, "data": data, "bin": binary}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
