"""keyplex's licence proxy against faithful fakes of the real licence services
(tests/python/licence_fakes.py, written from the services' public documentation, not from
keyplex's code): Widevine's cloud licence proxy API, Microsoft's PlayReady test server, a
PlayReady Server SDK server reading keyplex's CustomData, and hosted FairPlay key services.

Each fake checks what its service checks (signatures, field names and types, the PlayReady
client's signature over <LA>) and answers a licence derived from the challenge and the keys it
received, so these tests prove that keyplex's real requests are accepted and carry the right
keys and licence rules; the fakes' own tests (test_licence_fakes.py) prove they refuse wrong
ones."""

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from lxml import etree

import keyplex_proc
from licence_fakes import (
    SHAKA_TEST_PROVIDER,
    SHAKA_TEST_SIGNING_IV,
    SHAKA_TEST_SIGNING_KEY,
    WIDEVINE_SERVICE_CERTIFICATE,
    FakeLicenceServices,
    make_playready_challenge,
    make_wrm_header,
)

ADMIN_TOKEN = "licence-upstreams-admin-" + "0123456789abcdef"
PORTAL_SECRET = "portal-secret-for-upstream-tests"


def config(fakes_url: str) -> str:
    wv_url = f"{fakes_url}/widevine/cenc/getlicense/{SHAKA_TEST_PROVIDER}"
    return f"""
[admin]
token = "{ADMIN_TOKEN}"

[tenants.real]
basic = [{{ user = "packager", password = "real-packager-secret" }}]

[tenants.real.licence]
jwt = {{ hs256_secret = "{PORTAL_SECRET}" }}
policy = {{ licence_duration_seconds = 3600, persistent = false }}

[tenants.real.licence.upstream]
widevine = {{ url = "{wv_url}", protocol = "widevine-cloud", provider = "{SHAKA_TEST_PROVIDER}", signing_key = "{SHAKA_TEST_SIGNING_KEY.hex()}", signing_iv = "{SHAKA_TEST_SIGNING_IV.hex()}" }}
playready = {{ url = "{fakes_url}/playready/rightsmanager.asmx", protocol = "playready-test-server" }}
fairplay = {{ url = "{fakes_url}/fairplay/json", protocol = "fairplay-json" }}

[tenants.sdk]
basic = [{{ user = "packager", password = "sdk-packager-secret" }}]

[tenants.sdk.licence]
jwt = {{ hs256_secret = "{PORTAL_SECRET}" }}
require_session = true

[tenants.sdk.licence.upstream]
widevine = {{ url = "{wv_url}", protocol = "widevine-cloud", provider = "{SHAKA_TEST_PROVIDER}", signing_key = "{'ab' * 32}", signing_iv = "{SHAKA_TEST_SIGNING_IV.hex()}" }}
playready = {{ url = "{fakes_url}/playready-sdk/rightsmanager.asmx", protocol = "playready-customdata" }}
fairplay = {{ url = "{fakes_url}/fairplay/binary", protocol = "fairplay-binary" }}
"""


@pytest.fixture(scope="module")
def fakes():
    services = FakeLicenceServices(
        widevine_providers={SHAKA_TEST_PROVIDER: (SHAKA_TEST_SIGNING_KEY, SHAKA_TEST_SIGNING_IV)})
    services.start()
    yield services
    services.stop()


@pytest.fixture(scope="module")
def server(keyplex_bin, tmp_path_factory, fakes):
    with keyplex_proc.running_keyplex(keyplex_bin, config(fakes.url),
                                      tmp_path_factory.mktemp("upstreams")) as srv:
        yield srv


def call(base, method, path, body=None, headers=None):
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def admin(server, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    return call(server["base"], method, path, data,
                {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})


def token(claims: dict) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"exp": int(time.time()) + 3600, **claims}).encode())
    signature = hmac.new(PORTAL_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def supplied_key(server, tenant: str, password: str, content: str, track: str = "HD"):
    """Stores a packager-supplied key (so the test knows it) with CPIX; (kid, key, iv)."""
    kid, key, iv = uuid.uuid4(), bytes(range(16)), bytes(range(16, 32))
    key = hashlib.sha256(kid.bytes).digest()[:16]
    cpix = f"""<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" contentId="{content}">
  <cpix:ContentKeyList>
    <cpix:ContentKey kid="{kid}" explicitIV="{base64.b64encode(iv).decode()}">
      <cpix:Data><pskc:Secret><pskc:PlainValue>{base64.b64encode(key).decode()}</pskc:PlainValue></pskc:Secret></cpix:Data>
    </cpix:ContentKey>
  </cpix:ContentKeyList>
  <cpix:ContentKeyUsageRuleList>
    <cpix:ContentKeyUsageRule kid="{kid}" intendedTrackType="{track}"/>
  </cpix:ContentKeyUsageRuleList>
</cpix:CPIX>"""
    auth = base64.b64encode(f"packager:{password}".encode()).decode()
    status, _, answer = call(server["base"], "POST", f"/{tenant}/cpix", cpix.encode(),
                             {"Authorization": f"Basic {auth}", "Content-Type": "application/xml"})
    assert status == 200, answer
    keyplex_proc.saw_key(key)
    return kid, key, iv


def licence(server, tenant, drm, body, tok=None, query="", content_type="application/octet-stream",
            headers=None):
    h = {"Content-Type": content_type, **(headers or {})}
    if tok:
        h["Authorization"] = f"Bearer {tok}"
    return call(server["base"], "POST", f"/{tenant}/{drm}/contentlicenseservice/v1/licenses{query}",
                body, h)


def last(fakes, route):
    records = fakes.requests_for(route)
    assert records, f"the fake's {route} was not called"
    return records[-1]


def test_widevine_cloud_accepts_keyplex_signed_request_with_the_keys_and_rules(server, fakes):
    kid, key, _ = supplied_key(server, "real", "real-packager-secret", "wv-movie")
    # The content's own rules replace the tenant default; the token narrows them.
    status, _, body = admin(server, "PUT", "/admin/v1/tenants/real/contents/wv-movie/licence-policy",
                            {"security_level": {"HD": 1}, "hdcp": "HDCP_V2_2", "persistent": True,
                             "licence_duration_seconds": 600, "renewal_interval_seconds": 60})
    assert status == 200, body
    tok = token({"sub": "alice", "contents": ["wv-movie"],
                 "policy": {"licence_duration": 300, "persistence": False}})
    challenge = b"\x08\x01\x12\x20" + b"a widevine licence challenge...."
    status, headers, answer = licence(server, "real", "wvls", challenge, tok, f"?kid={kid}")
    assert status == 200, answer
    assert headers["Content-Type"] == "application/octet-stream"
    assert answer == FakeLicenceServices.widevine_licence(challenge, [(kid.bytes, key)])
    record = last(fakes, "widevine")
    assert record["accepted"], record["reason"]
    inner = record["parsed"]["request"]
    assert base64.b64decode(inner["content_id"]) == b"wv-movie"
    [spec] = inner["content_key_specs"]
    assert spec["track_type"] == "HD"
    assert spec["security_level"] == 4, "HD at L1 is HW_SECURE_DECODE"
    assert spec["required_output_protection"]["hdcp"] == "HDCP_V2_2"
    policy = inner["policy_overrides"]
    assert policy["license_duration_seconds"] == 300, "the token narrowed 600 to 300"
    assert policy["can_persist"] is False and policy["can_renew"] is True
    assert policy["renewal_delay_seconds"] == 60
    assert base64.b64decode(inner["session_init"]["provider_client_token"]) == b"alice"

    # The audit event of the licence records the policy applied.
    status, _, events = admin(server, "GET", "/admin/v1/audit?tenant=real&content_id=wv-movie")
    assert status == 200
    details = [e.get("detail") or "" for e in json.loads(events)["events"]]
    applied = [d for d in details if d.startswith("policy ")]
    assert applied, details
    assert json.loads(applied[0][len("policy "):])["licence_duration_seconds"] == 300


def test_widevine_service_certificate_request_needs_no_token(server, fakes):
    status, _, answer = licence(server, "real", "wvls", b"\x08\x04")
    assert status == 200, answer
    assert answer == WIDEVINE_SERVICE_CERTIFICATE
    assert last(fakes, "widevine")["accepted"]


def test_a_wrong_signing_key_is_refused_by_the_service_and_reported_as_502(server, fakes):
    kid, _, _ = supplied_key(server, "sdk", "sdk-packager-secret", "wv-sdk")
    tok = token({"sub": "bob", "contents": ["wv-sdk"]})
    setup = session(server, "sdk", tok)
    payload = {"keySystem": "com.widevine.alpha", "requestType": "license-request",
               "payload": base64.b64encode(b"\x08\x01challenge").decode(), "kid": str(kid)}
    status, _, answer = call(server["base"], "POST", f"/sdk/ssm/v1/sessions/{setup}/licence",
                             json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert status == 502, answer
    assert b"SIGNATURE_FAILED" in answer
    record = last(fakes, "widevine")
    assert not record["accepted"] and "signature" in record["reason"].lower()


def test_playready_test_server_gets_the_keys_in_cfg_and_the_challenge_unchanged(server, fakes):
    kid, key, _ = supplied_key(server, "real", "real-packager-secret", "pr-movie")
    tok = token({"sub": "carol", "contents": ["pr-movie"], "policy": {"playready_security_level": 2000}})
    challenge = make_playready_challenge(make_wrm_header([kid]))
    status, headers, answer = licence(
        server, "real", "prls", challenge, tok, f"?kid={kid}", "text/xml; charset=utf-8",
        {"SOAPAction": '"http://schemas.microsoft.com/DRM/2007/03/protocols/AcquireLicense"'})
    assert status == 200, answer
    record = last(fakes, "playready")
    assert record["accepted"], record["reason"]
    [group] = record["parsed"]["groups"]
    assert str(group.get("sl")) == "2000", record["parsed"]["cfg"]
    assert [k["kid"] for k in record["parsed"]["keys"]] == [str(kid)]
    licences = etree.fromstring(answer).xpath("//*[local-name()='License']")
    assert [base64.b64decode(l.text) for l in licences] == [
        FakeLicenceServices.playready_licence(challenge, [(kid.bytes, key)])]


def test_a_playready_soap_fault_comes_back_unchanged(server, fakes):
    kid, _, _ = supplied_key(server, "real", "real-packager-secret", "pr-fault")
    tok = token({"sub": "carol", "contents": ["pr-fault"]})
    challenge = make_playready_challenge(make_wrm_header([kid]))
    # The client's signed <LA> altered: the server refuses it with a SOAP fault.
    tampered = challenge.replace(b"<CLIENTVERSION>1", b"<CLIENTVERSION>9", 1)
    assert tampered != challenge
    status, headers, answer = licence(server, "real", "prls", tampered, tok, f"?kid={kid}",
                                      "text/xml; charset=utf-8")
    assert status == 500, answer
    assert "xml" in headers["Content-Type"]
    record = last(fakes, "playready")
    assert not record["accepted"]
    assert answer == record["response"], "the fault passes back byte for byte"
    assert b"Fault" in answer


def session(server, tenant, tok) -> str:
    status, _, body = call(server["base"], "POST", f"/{tenant}/ssm/v1/sessions/setup", b"",
                           {"Authorization": f"Bearer {tok}"})
    assert status == 201, body
    session_id = json.loads(body)["sessionId"]
    keyplex_proc.saw_secret(session_id)
    return session_id


def test_playready_customdata_and_require_session(server, fakes):
    kid, key, _ = supplied_key(server, "sdk", "sdk-packager-secret", "sdk-movie", "SD")
    tok = token({"sub": "dave", "contents": ["sdk-movie"]})
    challenge = make_playready_challenge(make_wrm_header([kid]))
    # require_session: no live session, no licence.
    status, _, answer = licence(server, "sdk", "prls", challenge, tok, f"?kid={kid}", "text/xml")
    assert status == 403, answer
    assert b"secure session" in answer
    session(server, "sdk", tok)
    status, _, answer = licence(server, "sdk", "prls", challenge, tok, f"?kid={kid}", "text/xml")
    assert status == 200, answer
    record = last(fakes, "playready-sdk")
    assert record["accepted"], record["reason"]
    custom = record["parsed"]["customdata"]
    assert custom["content_id"] == "sdk-movie" and custom["user"] == "dave"
    assert [k["kid"] for k in custom["keys"]] == [str(kid)]
    assert custom["policy"]["persistent"] is False
    licences = etree.fromstring(answer).xpath("//*[local-name()='License']")
    assert [base64.b64decode(l.text) for l in licences] == [
        FakeLicenceServices.playready_licence(challenge, [(kid.bytes, key)])]


def test_fairplay_hosted_json_and_binary(server, fakes):
    spc = b"an SPC from Safari " * 8
    kid, key, iv = supplied_key(server, "real", "real-packager-secret", "fp-movie")
    tok = token({"sub": "erin", "contents": ["fp-movie"]})
    expected = FakeLicenceServices.fairplay_ckc(spc, key, iv, "fp-movie")
    # Raw SPC in, raw CKC out.
    status, _, answer = licence(server, "real", "fpls", spc, tok, f"?kid={kid}")
    assert status == 200, answer
    assert answer == expected
    assert last(fakes, "fairplay-json")["accepted"]
    # JSON in, JSON out.
    status, _, answer = licence(server, "real", "fpls",
                                json.dumps({"spc": base64.b64encode(spc).decode()}).encode(), tok,
                                f"?kid={kid}", "application/json")
    assert status == 200, answer
    assert base64.b64decode(json.loads(answer)["ckc"]) == expected

    kid, key, iv = supplied_key(server, "sdk", "sdk-packager-secret", "fp-sdk")
    tok = token({"sub": "erin", "contents": ["fp-sdk"]})
    session(server, "sdk", tok)
    status, _, answer = licence(server, "sdk", "fpls", spc, tok, f"?kid={kid}")
    assert status == 200, answer
    assert answer == FakeLicenceServices.fairplay_ckc(spc, key, iv, "fp-sdk")
    assert last(fakes, "fairplay-binary")["accepted"]


def test_content_policy_admin_round_trip_and_refusals(server):
    path = "/admin/v1/tenants/real/contents/policy-movie/licence-policy"
    status, _, body = admin(server, "GET", path)
    assert status == 200 and json.loads(body)["source"] == "tenant", "the tenant default applies"
    status, _, body = admin(server, "PUT", path, {"hdpc": "HDCP_V1"})
    assert status == 400 and b"hdpc" in body, body
    status, _, body = admin(server, "PUT", path, {"security_level": {"HD": 4}})
    assert status == 400, body
    status, _, body = admin(server, "PUT", path, {"persistent": True})
    assert status == 200, body
    status, _, body = admin(server, "GET", path)
    assert json.loads(body) == {"tenant": "real", "content_id": "policy-movie",
                                "source": "content", "policy": {"persistent": True}}
    status, _, _ = admin(server, "DELETE", path)
    assert status == 204
    status, _, _ = admin(server, "DELETE", path)
    assert status == 404


def test_an_upstream_with_secrets_added_through_the_admin_api_is_sealed_and_used(server, fakes):
    kid, key, _ = supplied_key(server, "sdk", "sdk-packager-secret", "wv-admin")
    tok = token({"sub": "frank", "contents": ["wv-admin"]})
    setup = session(server, "sdk", tok)
    payload = {"keySystem": "com.widevine.alpha", "requestType": "license-request",
               "payload": base64.b64encode(b"\x08\x01challenge").decode(), "kid": str(kid)}

    def ask():
        return call(server["base"], "POST", f"/sdk/ssm/v1/sessions/{setup}/licence",
                    json.dumps(payload).encode(), {"Content-Type": "application/json"})

    assert ask()[0] == 502, "the file's upstream has the wrong signing key"
    status, _, body = admin(server, "POST", "/admin/v1/tenants/sdk/credentials", {
        "type": "licence_upstream", "drm": "widevine",
        "url": f"{fakes.url}/widevine/cenc/getlicense/{SHAKA_TEST_PROVIDER}",
        "protocol": "widevine-cloud", "provider": SHAKA_TEST_PROVIDER,
        "signing_key": SHAKA_TEST_SIGNING_KEY.hex(), "signing_iv": SHAKA_TEST_SIGNING_IV.hex()})
    assert status == 201, body
    assert SHAKA_TEST_SIGNING_KEY.hex().encode() not in body
    status, _, answer = ask()
    assert status == 200, answer
    licence_bytes = base64.b64decode(json.loads(answer)["licence"])
    assert licence_bytes == FakeLicenceServices.widevine_licence(b"\x08\x01challenge", [(kid.bytes, key)])
    status, _, listing = admin(server, "GET", "/admin/v1/tenants/sdk/credentials")
    assert b"licence_upstream" in listing and SHAKA_TEST_SIGNING_KEY.hex().encode() not in listing
    # A second one for the same DRM would shadow the first.
    status, _, body = admin(server, "POST", "/admin/v1/tenants/sdk/credentials", {
        "type": "licence_upstream", "drm": "widevine", "url": "https://other.example/licence"})
    assert status == 409, body
