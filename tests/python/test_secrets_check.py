"""scripts/check-secrets.py, the secrets check over a whole test run: it finds a key or a
configured secret in any spelling, anywhere in a log line, and refuses to pass vacuously."""

import base64
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def tmp_path():
    """Outside pytest's temporary directory: the suite's own secrets check reads every log
    there, and these fake runs' leaks are meant to be found by the script only."""
    with tempfile.TemporaryDirectory(prefix="check-secrets-") as d:
        yield Path(d)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-secrets.py"


def make_run(tmp_path: Path, leak: str | None = None) -> tuple[Path, list[bytes]]:
    """A run's audit directory: 300 keys, one configured secret, a Rust and a Python log."""
    run = tmp_path / "run"
    run.mkdir()
    keys = [os.urandom(16) for _ in range(300)]
    lines = [f"hex:{k.hex()}" for k in keys] + ["text:acme-portal-licence-secret"]
    (run / "it-1.secrets").write_text("\n".join(lines) + "\n")
    (run / "it-1.log").write_text("INFO request{uri=/acme/cpix}: answered kid=1234\n")
    (run / "python-2").mkdir()
    (run / "python-2" / "0000-server.log").write_text(f"DEBUG something {leak or 'harmless'} here\n")
    return run, keys


def check(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True)


def test_a_clean_run_passes(tmp_path):
    run, _ = make_run(tmp_path)
    result = check(run)
    assert result.returncode == 0, result.stderr
    assert "300 content keys" in result.stdout


@pytest.mark.parametrize("spelling", [
    lambda k: k.hex(),
    lambda k: k.hex().upper(),
    lambda k: base64.b64encode(k).decode(),
    lambda k: base64.b64encode(k).decode().rstrip("="),
    lambda k: base64.urlsafe_b64encode(k).decode().rstrip("="),
    lambda k: str(uuid.UUID(bytes=k)),
    lambda k: "00ff" + k.hex() + "abcd",  # inside a longer hex dump
], ids=["hex", "HEX", "base64", "base64-unpadded", "base64url", "uuid", "in-hex-dump"])
def test_a_key_in_any_spelling_fails_the_run(tmp_path, spelling):
    run, keys = make_run(tmp_path)
    log = run / "python-2" / "0000-server.log"
    log.write_text(log.read_text() + f"DEBUG value={spelling(keys[17])}\n")
    result = check(run)
    assert result.returncode == 1
    assert "0000-server.log:2: a content key" in result.stderr
    # The report names where, never what.
    assert keys[17].hex() not in result.stderr + result.stdout


def test_a_configured_secret_fails_the_run(tmp_path):
    run, _ = make_run(tmp_path, leak="Bearer acme-portal-licence-secret")
    result = check(run)
    assert result.returncode == 1
    assert "a configured secret" in result.stderr
    assert "acme-portal-licence-secret" not in result.stderr


def test_a_run_that_recorded_nothing_does_not_pass(tmp_path):
    run, _ = make_run(tmp_path)
    (run / "it-1.secrets").write_text("")
    result = check(run)
    assert result.returncode == 1
    assert "cannot run" in result.stderr
    (tmp_path / "b").mkdir()
    run2, _ = make_run(tmp_path / "b")
    (run2 / "it-1.log").unlink()
    assert check(run2).returncode == 1
