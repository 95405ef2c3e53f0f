"""The operator dashboard at /ui/ in headless Chromium, against a real keyplex with known traffic.

A keyplex of its own (an admin token, two tenants) gets CPIX requests from a packager, ClearKey
licence requests from players (granted, one denied) and a malformed CPIX request (an error);
then dashboard.mjs opens /ui/, tries a wrong admin token, signs in, selects the tenant, waits for
the live charts, searches the contents, opens one content's keys and takes a screenshot.

Checked: the wrong token is refused on the page; the tiles show exactly the traffic sent to the
selected tenant (not the other tenant's); every chart drew data points; the contents search
finds the contents that match and only those; the keys table lists the content's key id and no
key value appears anywhere on the page; the browser logged no error.

The screenshot goes to docs/dashboard.png with KEYPLEX_UPDATE_SCREENSHOTS=1, else to a
temporary directory.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import keyplex_proc  # tests/keyplex_proc.py (conftest puts tests/ on sys.path)
from conftest import CHROMIUM, HERE, ROOT, b64url, mint_token

ADMIN_TOKEN = "dashboard-test-admin-token-0123456789"
TENANT, OTHER = "acme", "globex"
USER, PASSWORD = "packager", "s3cret-dashboard"
OTHER_USER, OTHER_PASSWORD = "packager", "s3cret-globex"
LICENCE_SECRET = "dashboard-tests-entitlement-secret"
NS = {"cpix": "urn:dashif:org:cpix", "pskc": "urn:ietf:params:xml:ns:keyprov:pskc"}

# The traffic: content ids and how many CPIX requests each gets (the first creates its key, the
# others are served from the store).
CPIX_REQUESTS = {"movie-dash-1": 2, "movie-dash-2": 1, "trailer-7": 1}
OTHER_TENANT_CONTENT = "globex-dash-9"  # a "dash" content of the other tenant: never listed


def config() -> str:
    return f"""
[admin]
token = "{ADMIN_TOKEN}"

[tenants.{TENANT}]
basic = [{{ user = "{USER}", password = "{PASSWORD}" }}]
kid_override = true

[tenants.{TENANT}.licence]
jwt = {{ hs256_secret = "{LICENCE_SECRET}" }}

[tenants.{OTHER}]
basic = [{{ user = "{OTHER_USER}", password = "{OTHER_PASSWORD}" }}]
kid_override = true
"""


@pytest.fixture(scope="module", autouse=True)
def prerequisites():
    """Overrides conftest's: the dashboard needs no built players, only node and chromium."""
    missing = []
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("playwright-core: run `npm ci --ignore-scripts` in tests/browser")
    if not CHROMIUM.exists():
        missing.append("chromium: apt-get install -y chromium chromium-driver")
    if shutil.which("node") is None:
        missing.append("node: apt-get install -y nodejs")
    assert not missing, "the dashboard test cannot run:\n  " + "\n  ".join(missing)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with keyplex_proc.running_keyplex(keyplex_proc.keyplex_bin(), config(),
                                      tmp_path_factory.mktemp("keyplex-dashboard")) as srv:
        yield srv


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def cpix_body(content_id: str) -> bytes:
    kid = uuid.uuid4()  # kid_override: keyplex chooses the kid, whatever the request says
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX contentId="{content_id}" version="2.3"
    xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc">
  <cpix:ContentKeyList>
    <cpix:ContentKey kid="{kid}" commonEncryptionScheme="cenc"/>
  </cpix:ContentKeyList>
</cpix:CPIX>""".encode()


def cpix(server, tenant: str, auth: str, content_id: str) -> dict:
    """One CPIX request; keyplex's key id and key for the content."""
    status, payload = http("POST", f"{server['base']}/{tenant}/cpix", cpix_body(content_id),
                           {"Authorization": auth, "Content-Type": "application/xml"})
    assert status == 200, payload.decode(errors="replace")
    (key,) = ET.fromstring(payload).findall("cpix:ContentKeyList/cpix:ContentKey", NS)
    value = base64.b64decode(key.find("cpix:Data/pskc:Secret/pskc:PlainValue", NS).text)
    keyplex_proc.saw_key(value)
    return {"kid": key.get("kid").lower(), "key": value}


def clearkey(server, token: str, kid: str) -> tuple[int, bytes]:
    body = json.dumps({"kids": [b64url(uuid.UUID(kid).bytes)], "type": "temporary"}).encode()
    return http("POST", f"{server['base']}/{TENANT}/clearkey/v1/licenses", body,
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


@pytest.fixture(scope="module")
def traffic(server):
    """Sends the known traffic; returns the keys and what the dashboard must count."""
    auth = basic(USER, PASSWORD)
    keys = {}
    for content_id, times in CPIX_REQUESTS.items():
        for _ in range(times):
            got = cpix(server, TENANT, auth, content_id)
            assert keys.setdefault(content_id, got) == got, "the same content gets the same key"
    cpix(server, OTHER, basic(OTHER_USER, OTHER_PASSWORD), OTHER_TENANT_CONTENT)

    # Licences: three granted, one denied (a token for movie-dash-2 asking for movie-dash-1's key).
    granted = [("movie-dash-1", "movie-dash-1"), ("movie-dash-1", "movie-dash-1"), ("movie-dash-2", "movie-dash-2")]
    for entitled, asked in granted:
        status, answer = clearkey(server, mint_token([entitled], secret=LICENCE_SECRET), keys[asked]["kid"])
        assert status == 200, answer
        (jwk,) = json.loads(answer)["keys"]
        assert jwk["k"] == b64url(keys[asked]["key"])
    status, answer = clearkey(server, mint_token(["movie-dash-2"], secret=LICENCE_SECRET), keys["movie-dash-1"]["kid"])
    assert status == 403, answer

    # An error: a CPIX document that is not XML.
    status, _ = http("POST", f"{server['base']}/{TENANT}/cpix", b"<cpix:CPIX this is not xml",
                     {"Authorization": auth, "Content-Type": "application/xml"})
    assert status == 400

    return {
        "keys": keys,
        # Every request to a key interface is a key request, the refused one included.
        "key_requests": sum(CPIX_REQUESTS.values()) + 1,
        "keys_created": len(CPIX_REQUESTS),
        "keys_served": sum(CPIX_REQUESTS.values()) - len(CPIX_REQUESTS),
        "licences_granted": len(granted),
        "licences_denied": 1,
        # Answers with status >= 400, per interface or DRM: the malformed CPIX document and
        # the refused licence.
        "errors": {"cpix": 1, "clearkey": 1},
    }


@pytest.fixture(scope="module")
def dashboard(server, traffic, tmp_path_factory):
    """dashboard.mjs's report, and where its screenshot is."""
    if os.environ.get("KEYPLEX_UPDATE_SCREENSHOTS") == "1":
        screenshot = ROOT / "docs" / "dashboard.png"
    else:
        screenshot = tmp_path_factory.mktemp("dashboard-shot") / "dashboard.png"
    # Chromium's singleton socket lives in TMPDIR, and a Unix socket path has ~107 bytes:
    # a short directory of its own, not pytest's deep tmp_path.
    scratch = tempfile.mkdtemp(prefix="kpx-dashboard-", dir="/tmp")
    request = {
        "url": f"{server['base']}/ui/",
        "token": ADMIN_TOKEN,
        "wrongToken": "not-the-" + ADMIN_TOKEN,
        "tenant": TENANT,
        "search": "dash",
        "select": "movie-dash-1",
        "screenshot": str(screenshot),
        "timeoutMs": 20000,
        "scratch": scratch,
    }
    try:
        proc = subprocess.run(
            ["node", str(HERE / "dashboard.mjs")], input=json.dumps(request), capture_output=True,
            text=True, timeout=120, cwd=HERE, env={**os.environ, "CHROMIUM": str(CHROMIUM)},
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert proc.returncode == 0 and proc.stdout, f"dashboard.mjs failed:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    report["screenshot"] = screenshot
    return report


def explain(report: dict) -> str:
    shown = {k: v for k, v in report.items() if k not in ("html", "stats")}
    stats = report.get("stats") or {}
    shown["stats.totals"] = stats.get("totals")
    return json.dumps(shown, indent=1, default=str)[-6000:]


def test_the_dashboard_ran_to_the_end(dashboard):
    assert dashboard["outcome"] == "ok", f"failed at step {dashboard['step']}: {dashboard['error']}\n" + explain(dashboard)


def test_a_wrong_admin_token_is_refused_on_the_page(dashboard):
    error = dashboard["loginError"] or ""
    assert "401" in error or "wrong" in error.lower(), explain(dashboard)
    assert dashboard["dashboardVisibleAfterWrongToken"] is False
    # The tenant selector, once signed in: all tenants, then each tenant.
    options = dashboard["tenantOptions"]
    assert options[0] == "" and sorted(options[1:]) == sorted([TENANT, OTHER]), explain(dashboard)


def test_the_tiles_show_exactly_the_traffic_of_the_selected_tenant(dashboard, traffic):
    tiles = dashboard["tiles"]
    assert tiles["key_requests"] == str(traffic["key_requests"]), explain(dashboard)
    assert tiles["keys_created"] == str(traffic["keys_created"]), explain(dashboard)
    assert tiles["licences_granted"] == str(traffic["licences_granted"]), explain(dashboard)
    assert tiles["licences_denied"] == str(traffic["licences_denied"]), explain(dashboard)
    assert tiles["errors"] == str(sum(traffic["errors"].values())), explain(dashboard)
    assert tiles["sessions"] == "0", explain(dashboard)
    totals = dashboard["stats"]["totals"]
    assert dashboard["stats"]["tenant"] == TENANT
    assert totals["key_requests"].get("cpix") == traffic["key_requests"], explain(dashboard)
    assert totals["keys_served"].get("cpix") == traffic["keys_served"], explain(dashboard)
    assert totals["licences_granted"].get("clearkey") == traffic["licences_granted"], explain(dashboard)
    assert totals["licences_denied"].get("clearkey") == traffic["licences_denied"], explain(dashboard)
    assert {k: v for k, v in totals["errors"].items() if v} == traffic["errors"], explain(dashboard)
    # The latency table has the CPIX interface with every request.
    cpix_latency = [row for row in dashboard["latency"] if row["interface"] == "cpix"]
    assert cpix_latency and cpix_latency[0]["count"] == traffic["key_requests"], explain(dashboard)


def test_every_chart_drew_the_traffic(dashboard):
    points = dashboard["points"]
    assert points["key_requests"] >= 1, explain(dashboard)
    assert points["keys"] >= 2, explain(dashboard)  # created and served
    assert points["licences"] >= 2, explain(dashboard)  # granted and denied
    assert points["errors"] >= 1, explain(dashboard)


def test_the_contents_search_lists_the_matching_contents_of_the_tenant_only(dashboard, traffic):
    assert sorted(dashboard["contents"]) == ["movie-dash-1", "movie-dash-2"], explain(dashboard)
    counts = {row["content_id"]: row["keys"] for row in dashboard["contentsAll"]}
    assert counts == {"movie-dash-1": 1, "movie-dash-2": 1}, explain(dashboard)


def test_the_keys_table_lists_the_key_ids_and_never_a_key(dashboard, traffic):
    assert dashboard["selected"] == "movie-dash-1"
    assert dashboard["keysHeading"] == "movie-dash-1"
    key = traffic["keys"]["movie-dash-1"]
    assert [k["kid"].lower() for k in dashboard["keys"]] == [key["kid"]], explain(dashboard)
    assert dashboard["keys"][0]["origin"] == "generated", explain(dashboard)
    html = dashboard["html"]
    for content in traffic["keys"].values():
        raw = content["key"]
        for form in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(), b64url(raw)):
            assert form not in html, "a key value is on the page"


def test_the_browser_logged_no_error(dashboard):
    assert dashboard["consoleErrors"] == [], explain(dashboard)
    assert dashboard["pageErrors"] == [], explain(dashboard)
    assert dashboard["failedRequests"] == [], explain(dashboard)
    assert dashboard["dashboardErrors"] == [], explain(dashboard)


def test_the_screenshot_shows_a_whole_page(dashboard):
    shot = Path(dashboard["screenshot"])
    assert shot.is_file(), explain(dashboard)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 40_000, len(data)
