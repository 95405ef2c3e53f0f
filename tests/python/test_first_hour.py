"""The first hour with keyplex, as a new user meets it: a failed start leaves nothing behind,
user errors print their message (no backtrace), logs carry colour only for a terminal (and
never with NO_COLOR), shutting down is logged, and the start-up hint names https with TLS."""

import os
import pty
import select
import signal
import socket
import subprocess
import time

import keyplex_proc
from keyplex_proc import free_port
from test_tls import make_ca, make_leaf, pem_cert

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def test_a_busy_port_leaves_no_half_made_data_dir(keyplex_bin, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(keyplex_bin), "serve", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert not (tmp_path / "data").exists(), "nothing is created before the port is ours"


def test_user_errors_print_their_message_without_a_backtrace(keyplex_bin, tmp_path):
    env = {**os.environ, "RUST_BACKTRACE": "1"}
    for args in (
        ["serve", "--config", str(tmp_path / "missing.toml")],
        ["pssh", "decode", "not base64 !"],
        ["admin", "--url", f"http://127.0.0.1:{free_port()}", "--token", "x", "tenants", "list"],
    ):
        result = subprocess.run([str(keyplex_bin), *args], capture_output=True, text=True, timeout=30, env=env)
        assert result.returncode == 1, (args, result)
        assert result.stderr.startswith("Error: "), (args, result.stderr)
        assert "stack backtrace" not in result.stderr and "Stack backtrace" not in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) <= 3, result.stderr


def run_in(terminal: bool, keyplex_bin, tmp_path, env_extra) -> bytes:
    """Starts `keyplex serve` with its output on a pseudo-terminal or a pipe, stops it with
    SIGTERM once it listens, and returns everything it wrote."""
    port = free_port()
    args = [str(keyplex_bin), "serve", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "data")]
    env = {**os.environ, **env_extra}
    if "NO_COLOR" not in env_extra:
        env.pop("NO_COLOR", None)
    if terminal:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(args, stdout=follower, stderr=follower, env=env)
        os.close(follower)
        reader = leader
    else:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        reader = proc.stdout.fileno()
    out = b""
    deadline = time.time() + 30
    stopped = False
    while time.time() < deadline:
        ready, _, _ = select.select([reader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(reader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not stopped and b"keyplex listening" in out:
            proc.send_signal(signal.SIGTERM)
            stopped = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=10)
    if terminal:
        os.close(reader)
    (tmp_path / f"serve-{'tty' if terminal else 'pipe'}.log").write_bytes(out)
    return out


def test_logs_are_coloured_only_on_a_terminal_and_never_with_no_color(keyplex_bin, tmp_path):
    piped = run_in(False, keyplex_bin, tmp_path / "pipe", {})
    assert b"keyplex listening" in piped
    assert b"\x1b[" not in piped, "no escape codes in a pipe or a file"
    tty = run_in(True, keyplex_bin, tmp_path / "tty", {})
    assert b"\x1b[" in tty, "colour for a person at a terminal"
    no_color = run_in(True, keyplex_bin, tmp_path / "nocolor", {"NO_COLOR": "1"})
    assert b"keyplex listening" in no_color
    assert b"\x1b[" not in no_color, "NO_COLOR turns colour off"
    # Graceful shutdown is logged: the signal, then the end.
    for out in (piped, no_color):
        text = out.decode(errors="replace")
        assert "shutting down" in text and "SIGTERM" in text, text[-2000:]
        assert "keyplex stopped" in text, text[-2000:]


def test_the_start_hint_says_https_with_tls(keyplex_bin, tmp_path):
    ca_key, ca_cert = make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "tls.crt").write_bytes(pem_cert(make_leaf(ca_key, ca_cert, key)))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    config = f'[server]\ntls = {{ cert_file = "{tmp_path / "tls.crt"}", key_file = "{tmp_path / "tls.key"}" }}\n'
    (tmp_path / "keyplex.toml").write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [str(keyplex_bin), "serve", "--config", str(tmp_path / "keyplex.toml"), "--listen", f"127.0.0.1:{port}",
         "--data", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out = b""
    deadline = time.time() + 30
    while b"keyplex listening" not in out and time.time() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            out += os.read(proc.stdout.fileno(), 65536)
    proc.terminate()
    out += proc.communicate(timeout=10)[0]
    text = out.decode(errors="replace")
    (tmp_path / "serve.log").write_text(text)
    assert f"https://127.0.0.1:{port}/demo/cpix" in text, text
    assert f"http://127.0.0.1:{port}" not in text, text


def test_shell_completions(keyplex_bin):
    for shell, marker in (("bash", "complete -F"), ("zsh", "#compdef keyplex"), ("fish", "complete -c keyplex")):
        result = subprocess.run([str(keyplex_bin), "completions", shell], capture_output=True, text=True,
                                timeout=30, check=True)
        assert marker in result.stdout, (shell, result.stdout[:300])
        assert "serve" in result.stdout and "admin" in result.stdout


def test_json_logs_for_log_shippers(keyplex_bin, tmp_path):
    import json
    port = free_port()
    proc = subprocess.Popen(
        [str(keyplex_bin), "serve", "--log-format", "json", "--listen", f"127.0.0.1:{port}",
         "--data", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": ""},
    )
    out = b""
    deadline = time.time() + 30
    while b"keyplex listening" not in out and time.time() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            out += os.read(proc.stdout.fileno(), 65536)
    proc.send_signal(signal.SIGTERM)
    out += proc.communicate(timeout=10)[0]
    (tmp_path / "serve.log").write_bytes(out)
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    messages = [e["fields"]["message"] for e in events]
    assert "keyplex listening" in messages, messages
    listening = next(e for e in events if e["fields"]["message"] == "keyplex listening")
    assert listening["level"] == "INFO" and listening["fields"]["addr"] == f"127.0.0.1:{port}"
    assert any("keyplex stopped" in m for m in messages), messages


def test_admin_finds_the_token_next_to_the_server(keyplex_bin, tmp_path):
    port = free_port()
    proc = subprocess.Popen([str(keyplex_bin), "serve", "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        keyplex_proc.wait_healthy(proc, f"http://127.0.0.1:{port}", 30,
                                  lambda: (tmp_path / "server.log").read_text())
        # In the server's directory: ./keyplex-data/admin-token, no flag needed.
        result = subprocess.run([str(keyplex_bin), "admin", "--url", f"http://127.0.0.1:{port}", "tenants", "list"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert '"demo"' in result.stdout
        # Elsewhere: --data names the directory; without it the message says what to do.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        result = subprocess.run([str(keyplex_bin), "admin", "--url", f"http://127.0.0.1:{port}",
                                 "--data", str(tmp_path / "keyplex-data"), "tenants", "list"],
                                cwd=elsewhere, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        result = subprocess.run([str(keyplex_bin), "admin", "--url", f"http://127.0.0.1:{port}", "tenants", "list"],
                                cwd=elsewhere, capture_output=True, text=True, timeout=30,
                                env={k: v for k, v in os.environ.items() if k != "KEYPLEX_ADMIN_TOKEN"})
        assert result.returncode == 1
        assert "--data DIR" in result.stderr, result.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
