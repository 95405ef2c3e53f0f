"""Tenant-defined DRM systems checked with parsers nobody on the project wrote: a SPEKE v2
request for Widevine, PlayReady and a defined Irdeto system (as AWS Elemental MediaPackage
sends it) is answered for all three; pywidevine's `PSSH` (which parses any system's box)
reads the Irdeto box back with the defined system id and the expanded data, pyplayready
the PlayReady one; the answer validates against the official CPIX 2.3 XSD (lxml). So do the
answers with a defined system of the GET-style form and ATEME's (dash and hls: the system is
listed for both) and of PallyCon's V1 and V2 requests naming it. The CLI defines a system and
the client asks for it by NAME:SYSTEM-ID and by its bare name."""

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
# binary (hex) payload, next to a Verimatrix one; initech lists its (file) Irdeto for the
# GET-style forms of dash and hls, and has the tokens of the GET-style and PallyCon routes.
INITECH_GET_TOKEN = "get-token-of-initech-0123456789"
INITECH_ENC_TOKEN = "enc-token-of-initech-0123456789"
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

[tenants.initech]
basic = [{{ user = "packager", password = "s3cret-initech" }}]
get_token = "{INITECH_GET_TOKEN}"
enc_token = "{INITECH_ENC_TOKEN}"
widevine_provider = "initech"

[[tenants.initech.drm_systems]]
name = "irdeto"
system_id = "{IRDETO}"
pssh_version = 1
pssh_data = "{{kid_base64}}|{{content_id}}"
pssh_data_encoding = "utf8"
dash_value = "Irdeto"
hls_keyformat = "com.irdeto.example"
hls_uri = "skd://irdeto/{{kid_hex}}"
formats = ["dash", "hls"]
"""
PALLYCON_SAMPLE = ROOT / "crates/keyplex-server/tests/it/fixtures/pallycon/dash-vod.xml"


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


def keys_recorded(root) -> None:
    """Every clear key of an answer goes to the secrets audit (no server log may hold it)."""
    for value in root.iterfind("cpix:ContentKeyList/cpix:ContentKey/cpix:Data/pskc:Secret/pskc:PlainValue", NS):
        keyplex_proc.saw_key(base64.b64decode(value.text))


def check_irdeto(root, content_id: str, *, hls: bool) -> int:
    """The answer's Irdeto DRMSystems: the defined system id, a PSSH that pywidevine reads back
    (system id, the key id, the expanded `{kid_base64}|{content_id}`), the data as
    ContentProtectionData where the dialect answers it, and with `hls` the defined KEYFORMAT
    and key URI. Returns how many there are."""
    drms = root.findall(f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{IRDETO}"]', NS)
    assert drms, f"no Irdeto DRMSystem in\n{etree.tostring(root).decode()}"
    key_ids = {k.get("kid") for k in root.iterfind("cpix:ContentKeyList/cpix:ContentKey", NS)}
    for drm in drms:
        kid = drm.get("kid")
        assert kid in key_ids
        pssh = drm.find("cpix:PSSH", NS)
        assert pssh is not None and pssh.text, "Irdeto PSSH answered"
        irdeto = PSSH(pssh.text)
        assert irdeto.system_id == uuid.UUID(IRDETO)
        assert irdeto.version == 1 and irdeto.key_ids == [uuid.UUID(kid)]
        assert irdeto.init_data == base64.b64encode(uuid.UUID(kid).bytes) + b"|" + content_id.encode()
        cpd = drm.find("cpix:ContentProtectionData", NS)
        if cpd is not None and cpd.text:
            cpd = base64.b64decode(cpd.text)
            # Plain CPIX: a <cenc:pssh> element with the box; PallyCon: the box's data.
            assert cpd == irdeto.init_data or b"<cenc:pssh" in cpd, cpd
        if hls:
            lines = [base64.b64decode(h.text).decode() for h in drm.findall("cpix:HLSSignalingData", NS)]
            assert lines, "Irdeto HLS signaling answered"
            for line in lines:
                assert 'KEYFORMAT="com.irdeto.example"' in line, line
                assert f'URI="skd://irdeto/{uuid.UUID(kid).hex}"' in line, line
    return len(drms)


@pytest.mark.parametrize("fmt", ["dash", "hls"])
def test_get_style_and_ateme_answers_with_a_defined_system_validate(drm_server, fmt):
    """The GET-style CPIX form and ATEME's answer the Irdeto system the tenant lists for both
    formats; every answer validates against the official CPIX 2.3 XSD."""
    content_id = f"py-get-{fmt}"
    status, payload = call(drm_server, "GET", f"/initech/cpix/{fmt}/{content_id}",
                           headers={"Authorization": f"Bearer {INITECH_GET_TOKEN}"})
    assert status == 200, payload
    root = validated(payload)
    keys_recorded(root)
    assert check_irdeto(root, content_id, hls=fmt == "hls") == 1
    irdeto = root.find(f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{IRDETO}"]', NS)
    if fmt == "dash":
        assert irdeto.get("name") == "Irdeto", "DRMSystem@name is the dash_value"

    content_id = f"py-ateme-{fmt}"
    status, payload = call(drm_server, "GET", f"/initech/cpix/anevia/{fmt}/{INITECH_ENC_TOKEN}/{content_id}")
    assert status == 200, payload
    root = validated(payload)
    keys_recorded(root)
    assert root.get("id") == content_id
    assert check_irdeto(root, content_id, hls=fmt == "hls") == 1


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_pallycon_requests_naming_a_defined_system_validate(drm_server, api):
    """PallyCon's own request sample (its guide's DASH VOD) with a DRMSystem for the Irdeto id
    added: V1 answers its PSSH, V2 its PSSH, data and HLS signaling; both validate against the
    CPIX 2.3 XSD."""
    content_id = f"py-pallycon-{api}"
    xml = PALLYCON_SAMPLE.read_text()
    head, rest = xml.split('<cpix:CPIX id="', 1)
    xml = head + f'<cpix:CPIX id="{content_id}"' + rest.split('"', 1)[1]
    sample_kid = "681e5b39-49f2-4dfa-b744-86573c22e6fb"
    xml = xml.replace("</cpix:DRMSystemList>",
                      f'<cpix:DRMSystem kid="{sample_kid}" systemId="{IRDETO}" /></cpix:DRMSystemList>')
    status, payload = call(drm_server, "POST", f"/initech/{api}/cpix/pallycon/getKey/{INITECH_ENC_TOKEN}",
                           xml.encode(), {"Content-Type": "application/xml"})
    assert status == 200, payload
    root = validated(payload)
    keys_recorded(root)
    assert root.get("id") == content_id
    assert check_irdeto(root, content_id, hls=api == "v2") == 1
    systems = {d.get("systemId").lower() for d in root.iterfind("cpix:DRMSystemList/cpix:DRMSystem", NS)}
    assert systems == {PR, WV, IRDETO}
    irdeto = root.find(f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{IRDETO}"]', NS)
    if api == "v1":
        assert irdeto.find("cpix:ContentProtectionData", NS) is None
    else:
        cpd = base64.b64decode(irdeto.find("cpix:ContentProtectionData", NS).text)
        assert cpd == PSSH(irdeto.find("cpix:PSSH", NS).text).init_data
