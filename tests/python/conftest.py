"""Shared fixtures: a real keyplex binary serving on a free loopback port."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keyplex_proc  # noqa: E402  (tests/: shared with tests/e2e and tests/browser)

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


@pytest.fixture(scope="session")
def keyplex_bin() -> Path:
    return keyplex_proc.keyplex_bin()


@pytest.fixture(scope="session")
def server(keyplex_bin, tmp_path_factory):
    with keyplex_proc.running_keyplex(keyplex_bin, CONFIG, tmp_path_factory.mktemp("keyplex-data")) as srv:
        yield srv


@pytest.fixture(scope="session", autouse=True)
def no_key_in_any_server_log(tmp_path_factory):
    """After the whole session: no server log holds a content key a test received."""
    yield
    keyplex_proc.check_server_logs(tmp_path_factory.getbasetemp(), "python")
