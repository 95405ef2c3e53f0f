"""Moving an installation from SQLite to PostgreSQL with the real binary: `keyplex migrate`,
`keyplex store copy`, and a PostgreSQL node serving the copied keys unchanged. A node with
another master key refuses to start on the copied database, naming both fingerprints.
"""

import base64
import json
import os
import secrets
import subprocess
import uuid

import pytest

import keyplex_proc
from test_cluster import PG_SERVER, nagra_key, psql

CONFIG = """
[tenants.acme]
basic = [{ user = "packager", password = "s3cret-acme" }]
"""
PACKAGER = "Basic " + base64.b64encode(b"packager:s3cret-acme").decode()


@pytest.fixture
def database():
    name = "keyplex_copy_cli_test_" + secrets.token_hex(5)
    psql(f"CREATE DATABASE {name}")
    yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(binary, *args, env=None, check=True):
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def test_sqlite_installation_moves_to_postgres_with_identical_keys(keyplex_bin, tmp_path, database):
    master = secrets.token_hex(32)
    env = {"KEYPLEX_MASTER_KEY": master}
    contents = [f"movie-{uuid.uuid4().hex[:6]}-{i}" for i in range(5)]
    sqlite_dir = tmp_path / "sqlite-node"
    with keyplex_proc.running_keyplex(keyplex_bin, CONFIG, sqlite_dir, env=env) as srv:
        before = {c: nagra_key(srv["base"], c)[1] for c in contents}
    assert all(before.values())

    # The target schema first (as a deployment would), then the copy, twice.
    out = run(keyplex_bin, "migrate", "--database-url", database).stdout
    assert "up to date" in out and "postgres://" in out and "@" not in out
    source = f"sqlite://{sqlite_dir / 'keyplex.sqlite'}"
    report = json.loads(run(keyplex_bin, "store", "copy", "--from", source, "--to", database,
                            env=env).stdout)
    assert report["keys_copied"] == 5 and report["keys_verified"] == 5, report
    assert report["audit_events_copied"] > 0, report
    again = json.loads(run(keyplex_bin, "store", "copy", "--from", source, "--to", database,
                           env=env).stdout)
    assert (again["keys_copied"], again["keys_already_present"], again["audit_skipped"]) == (0, 5, True)

    # A node on PostgreSQL answers the same keys.
    pg_config = f'[server]\ndatabase_url = "{database}"\n' + CONFIG
    with keyplex_proc.running_keyplex(keyplex_bin, pg_config, tmp_path / "pg-node", env=env) as srv:
        after = {c: nagra_key(srv["base"], c)[1] for c in contents}
    assert after == before

    # A node whose master key differs does not start on this database.
    other = {"KEYPLEX_MASTER_KEY": secrets.token_hex(32)}
    cfg = tmp_path / "other.toml"
    cfg.write_text(pg_config)
    result = subprocess.run(
        [str(keyplex_bin), "serve", "--config", str(cfg), "--data", str(tmp_path / "other"),
         "--listen", f"127.0.0.1:{keyplex_proc.free_port()}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **other})
    assert result.returncode != 0
    assert "same master key" in result.stderr, result.stderr
    assert master not in result.stderr + result.stdout

    # Wrong URLs are refused with a clear message.
    bad = run(keyplex_bin, "store", "copy", "--from", "mysql://x", "--to", database, env=env, check=False)
    assert bad.returncode != 0 and "postgres://" in bad.stderr
