"""Tenant-defined DRM systems checked with parsers nobody on the project wrote: a SPEKE v2
request for Widevine, PlayReady and a defined Irdeto system (as AWS Elemental MediaPackage
sends it) is answered for all three; pywidevine's `PSSH` (which parses any system's box)
reads the Irdeto box back with the defined system id and the expanded data, pyplayready
the PlayReady one; the answer validates against the official CPIX 2.3 XSD (lxml)."""

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
from lxml import etree
from pyplayready import PSSH as PlayReadyPSSH
from pywidevine import PSSH

import keyplex_proc
from conftest import ROOT
from test_crosscheck import NS, PR, WV, schema

IRDETO = "80a6be7e-1448-4c37-9e70-d5aebe04c8d2"
# Verimatrix VCAS, as DASH-IF lists it (https://dashif.org/identifiers/content_protection/).
VERIMATRIX = "9a27dd82-fde2-4725-8cbc-4234aa06ec09"
ADMIN_TOKEN = "admin-token-for-the-drm-systems-test"
FIXTURE = ROOT / "crates/keyplex-server/tests/it/fixtures/speke_v2_widevine_playready_irdeto.xml"
VIDEO_KID = "6f0b7a52-1c8e-4a2c-9d1f-3b2e4c5d6a71"
AUDIO_KID = "2b9d4e61-7a3f-4c58-8e2d-1f0a9b8c7d62"

# acme defines Irdeto through the admin API (below); globex defines it in the file, with a
# binary (hex) payload, next to a Verimatrix one.
CONFIG = f"""
[admin]
token = "{ADMIN_TOKEN}"

[tenants.acme]
basic = [{{ user = "packager", password = "s3cret-acme" }}]
playready_la_url = "https://acme.example/prls/contentlicenseservice/v1/licenses"
widevine_provider = "acme"

[tenants.globex]
basic = [{{ user = "packager", password = "s3cret-globex" }}]

[[tenants.globex.drm_systems]]
name = "irdeto"
system_id = "{IRDETO}"
pssh_version = 0
pssh_data = "0801{{kid_hex}}"
pssh_data_encoding = "hex"
dash_value = "Irdeto"

[[tenants.globex.drm_systems]]
name = "verimatrix"
system_id = "{VERIMATRIX}"
pssh_version = 1
pssh_data = ""
dash_value = "Verimatrix VCAS"
"""


@pytest.fixture(scope="module")
def drm_server(keyplex_bin, tmp_path_factory):
    with keyplex_proc.running_keyplex(keyplex_bin, CONFIG, tmp_path_factory.mktemp("drm-systems")) as srv:
        yield srv


def call(server, method, path, body=None, headers=None):
    req = urllib.request.Request(server["base"] + path, data=body, method=method)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def admin(server, method, path, body=None):
    return call(server, method, path, json.dumps(body).encode() if body is not None else None, {
        "Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json",
    })


def speke_v2(server, tenant, body: str):
    basic = base64.b64encode(f"packager:s3cret-{tenant}".encode()).decode()
    return call(server, "POST", f"/{tenant}/speke/v2", body.encode(), {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/xml",
        "X-Speke-Version": "2.0",
    })


def pssh_of(root, system, kid) -> bytes:
    node = root.find(f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{system}"][@kid="{kid}"]/cpix:PSSH', NS)
    assert node is not None and node.text, f"no PSSH for {system} {kid}"
    return base64.b64decode(node.text)


def validated(payload: bytes) -> etree._Element:
    root = etree.fromstring(payload)
    xsd = schema("2.3")
    assert xsd.validate(root), f"answer does not validate against CPIX 2.3: {xsd.error_log}\n{payload.decode()}"
    return root


def test_speke_v2_answers_widevine_playready_and_a_defined_irdeto(drm_server):
    request = FIXTURE.read_text()
    status, payload = speke_v2(drm_server, "acme", request)
    assert status == 422 and b"unknown DRM system id " + IRDETO.encode() in payload, payload

    status, payload = admin(drm_server, "PUT", "/admin/v1/tenants/acme/drm-systems/irdeto", {
        "system_id": IRDETO,
        "pssh_version": 1,
        "pssh_data": "{kid_base64}|{content_id}",
        "pssh_data_encoding": "utf8",
        "dash_value": "Irdeto",
        "hls_keyformat": "com.irdeto.example",
    })
    assert status == 201, payload

    status, payload = speke_v2(drm_server, "acme", request)
    assert status == 200, payload
    root = validated(payload)
    for kid in (VIDEO_KID, AUDIO_KID):
        irdeto = PSSH(base64.b64encode(pssh_of(root, IRDETO, kid)).decode())
        assert irdeto.system_id == uuid.UUID(IRDETO)
        assert irdeto.version == 1
        assert irdeto.key_ids == [uuid.UUID(kid)]
        expected = base64.b64encode(uuid.UUID(kid).bytes) + b"|drm-systems-irdeto"
        assert irdeto.init_data == expected
        widevine = PSSH(base64.b64encode(pssh_of(root, WV, kid)).decode())
        assert widevine.system_id == PSSH.SystemId.Widevine
        assert widevine.key_ids == [uuid.UUID(kid)]
        playready = PlayReadyPSSH(base64.b64encode(pssh_of(root, PR, kid)).decode())
        assert playready.wrm_headers, "PlayReady header in the PSSH"
        cpd = root.find(
            f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{IRDETO}"][@kid="{kid}"]/cpix:ContentProtectionData', NS)
        assert b"<cenc:pssh" in base64.b64decode(cpd.text)
        media = root.find(
            f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{IRDETO}"][@kid="{kid}"]/cpix:HLSSignalingData[@playlist="media"]',
            NS)
        assert b'KEYFORMAT="com.irdeto.example"' in base64.b64decode(media.text)

    # Removed: unknown again on the next request.
    status, _ = admin(drm_server, "DELETE", "/admin/v1/tenants/acme/drm-systems/irdeto")
    assert status == 204
    status, payload = speke_v2(drm_server, "acme", request)
    assert status == 422, payload


def test_definitions_of_the_configuration_file_with_a_binary_payload(drm_server):
    request = FIXTURE.read_text().replace(
        f'systemId="{PR}"', f'systemId="{VERIMATRIX}"')
    status, payload = speke_v2(drm_server, "globex", request)
    assert status == 200, payload
    root = validated(payload)
    irdeto = PSSH(base64.b64encode(pssh_of(root, IRDETO, VIDEO_KID)).decode())
    assert irdeto.system_id == uuid.UUID(IRDETO) and irdeto.version == 0
    assert irdeto.init_data == b"\x08\x01" + uuid.UUID(VIDEO_KID).bytes
    verimatrix = PSSH(base64.b64encode(pssh_of(root, VERIMATRIX, AUDIO_KID)).decode())
    assert verimatrix.system_id == uuid.UUID(VERIMATRIX)
    assert verimatrix.key_ids == [uuid.UUID(AUDIO_KID)] and verimatrix.init_data == b""
    # File definitions are changed in the file, not through the API.
    status, payload = admin(drm_server, "DELETE", "/admin/v1/tenants/globex/drm-systems/verimatrix")
    assert status == 409, payload
    status, payload = admin(drm_server, "GET", "/admin/v1/tenants/globex/drm-systems")
    assert status == 200
    listed = json.loads(payload)["drm_systems"]
    assert [(d["name"], d["source"]) for d in listed] == [("irdeto", "config"), ("verimatrix", "config")]


def test_the_cli_defines_a_system_and_the_client_asks_for_it(drm_server, tmp_path):
    base, binary = drm_server["base"], str(drm_server["bin"])
    admin_cli = [binary, "admin", "--url", base, "--token", ADMIN_TOKEN, "drm-systems"]
    put = subprocess.run([*admin_cli, "put", "acme", "irdeto-cli", "--system-id", IRDETO,
                          "--pssh-version", "1", "--pssh-data", "{kid_hex}", "--dash-value", "Irdeto"],
                         capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["name"] == "irdeto-cli"
    listed = subprocess.run([*admin_cli, "list", "acme"], capture_output=True, text=True, timeout=60, check=True)
    assert [d["name"] for d in json.loads(listed.stdout)["drm_systems"]] == ["irdeto-cli"]
    client = subprocess.run(
        [binary, "client", "cpix", "--url", f"{base}/acme/cpix", "--content-id", "cli-irdeto",
         "--user", "packager", "--password", "s3cret-acme", "--drm", f"widevine,irdeto-cli:{IRDETO}"],
        capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    key = json.loads(client.stdout)["content_key_list"][0]
    keyplex_proc.saw_key(bytes.fromhex(key["key_hex"]))
    irdeto = PSSH(key["drm_systems"]["irdeto-cli"]["pssh"])
    assert irdeto.system_id == uuid.UUID(IRDETO)
    assert irdeto.key_ids == [uuid.UUID(key["key_id"])]
    assert irdeto.init_data == key["key_id_hex"].encode()

    # The bare name: the client looks the system id up in the tenant's definition through the
    # admin API (KEYPLEX_ADMIN_TOKEN here), and answers the same signaling under the same name.
    no_token_env = {k: v for k, v in os.environ.items() if k != "KEYPLEX_ADMIN_TOKEN"}
    bare = [binary, "client", "cpix", "--url", f"{base}/acme/cpix", "--content-id", "cli-irdeto",
            "--user", "packager", "--password", "s3cret-acme", "--drm", "widevine,irdeto-cli"]
    by_name = subprocess.run(bare, capture_output=True, text=True, timeout=60,
                             env={**no_token_env, "KEYPLEX_ADMIN_TOKEN": ADMIN_TOKEN})
    assert by_name.returncode == 0, by_name.stderr
    key_by_name = json.loads(by_name.stdout)["content_key_list"][0]
    keyplex_proc.saw_key(bytes.fromhex(key_by_name["key_hex"]))
    assert key_by_name["key_id"] == key["key_id"], "the same content, track and period: the same key"
    irdeto = PSSH(key_by_name["drm_systems"]["irdeto-cli"]["pssh"])
    assert irdeto.system_id == uuid.UUID(IRDETO)
    assert irdeto.key_ids == [uuid.UUID(key_by_name["key_id"])]
    assert key_by_name["drm_systems"]["irdeto-cli"] == key["drm_systems"]["irdeto-cli"]
    assert PSSH(key_by_name["widevine"]["pssh"]).system_id == PSSH.SystemId.Widevine
    # --admin-token works as the variable does (and no data directory is needed then).
    with_flag = subprocess.run([*bare, "--admin-token", ADMIN_TOKEN, "--data", str(tmp_path)],
                               capture_output=True, text=True, timeout=60, env=no_token_env)
    assert with_flag.returncode == 0, with_flag.stderr
    keyplex_proc.saw_key(bytes.fromhex(json.loads(with_flag.stdout)["content_key_list"][0]["key_hex"]))
    # No admin token anywhere (no variable, an empty data directory): a clear refusal naming
    # both ways out, before any key is asked for.
    no_token = subprocess.run([*bare, "--data", str(tmp_path)], capture_output=True, text=True,
                              timeout=60, env=no_token_env, cwd=tmp_path)
    assert no_token.returncode != 0 and not no_token.stdout
    assert "pass --drm irdeto-cli:SYSTEM-ID, or an admin token" in no_token.stderr, no_token.stderr
    # A name the tenant does not define: the server's 404, and the same way out.
    undefined = subprocess.run([*bare[:-1], "widevine,conax", "--admin-token", ADMIN_TOKEN],
                               capture_output=True, text=True, timeout=60, env=no_token_env)
    assert undefined.returncode != 0 and not undefined.stdout
    assert "tenant acme has no DRM system definition \"conax\"" in undefined.stderr, undefined.stderr
    assert "pass --drm conax:SYSTEM-ID" in undefined.stderr, undefined.stderr
    # A wrong admin token: refused, with the way out.
    wrong = subprocess.run([*bare, "--admin-token", "not-the-admin-token"],
                           capture_output=True, text=True, timeout=60, env=no_token_env)
    assert wrong.returncode != 0 and "the admin token was refused" in wrong.stderr, wrong.stderr
    assert "pass --drm irdeto-cli:SYSTEM-ID" in wrong.stderr, wrong.stderr

    removed = subprocess.run([*admin_cli, "remove", "acme", "irdeto-cli"], capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    refused = subprocess.run([*admin_cli, "put", "acme", "bad", "--system-id", "80a6be7e"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "is not a DRM system id" in refused.stderr, refused.stderr


def test_a_malformed_definition_stops_the_start_with_a_clear_message(keyplex_bin, tmp_path):
    bad = CONFIG.replace('system_id = "' + VERIMATRIX + '"', 'system_id = "9a27dd82-fde2"')
    with pytest.raises(RuntimeError) as failed:
        with keyplex_proc.running_keyplex(keyplex_bin, bad, tmp_path / "data", timeout=10):
            pass
    assert "is not a DRM system id" in str(failed.value)
