"""Self-tests of the fake DRM licence services (licence_fakes.py).

Each fake must accept a request built here from the public documentation, answer the
deterministic licence, and refuse what the real service refuses in the service's own error form.
These tests start no keyplex; they check the fakes themselves.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent))

import licence_fakes as lf  # noqa: E402
from licence_fakes import FakeLicenceServices  # noqa: E402

WV_KEY = lf.SHAKA_TEST_SIGNING_KEY
WV_IV = lf.SHAKA_TEST_SIGNING_IV
ACME_KEY = bytes(range(32))
ACME_IV = bytes(range(16, 32))

KID1 = uuid.UUID("9eb4050d-e44b-4802-932e-27d75083e266")
KEY1 = bytes.fromhex("166634c675823c235a4a9446fad52e4d")
KID2 = uuid.UUID("0872786e-f9e7-465f-a3a2-4e5b0ef8fa45")
KEY2 = bytes.fromhex("fbe3f8e3ffe54fb9aa7d5f0b34ab2f5e")
NS = {
    "soap": lf.SOAP11_NS, "p": lf.PR_PROTOCOLS_NS, "m": lf.PR_MESSAGES_NS, "ds": lf.XMLDSIG_NS,
}


@pytest.fixture(scope="module")
def fakes():
    f = FakeLicenceServices(widevine_providers={"widevine_test": (WV_KEY, WV_IV), "acme": (ACME_KEY, ACME_IV)})
    f.start()
    yield f
    f.stop()


def post(fakes, path, body: bytes, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", fakes.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------------------------
# Widevine cloud licence proxy protocol
# ---------------------------------------------------------------------------------------------

CHALLENGE = b"\x08\x01\x12\x20" + bytes(range(32)) + b"fake widevine licence request"


def wv_inner(**over):
    inner = {
        "payload": b64(CHALLENGE),
        "content_id": b64(b"movie-1"),
        "provider": "widevine_test",
        "content_key_specs": [
            {"key_id": b64(KID1.bytes), "key": b64(KEY1), "iv": b64(bytes(16)), "track_type": "HD",
             "security_level": 3, "required_output_protection": {"hdcp": "HDCP_V2_2"}},
            {"key_id": b64(KID2.bytes), "key": b64(KEY2), "track_type": "AUDIO", "security_level": 1},
        ],
        "policy_overrides": {"can_play": True, "can_persist": False, "can_renew": True,
                             "license_duration_seconds": 3600, "renewal_delay_seconds": 60,
                             "renewal_retry_interval_seconds": 10},
    }
    inner.update(over)
    return inner


def wv_post(fakes, inner, provider="widevine_test", key=WV_KEY, iv=WV_IV, signer=None, url_provider=None):
    body = lf.sign_widevine_request(inner, signer or provider, key, iv)
    status, ctype, raw = post(fakes, f"/widevine/cenc/getlicense/{url_provider or provider}", body,
                              {"Content-Type": "application/json"})
    assert status == 200 and ctype == "application/json", (status, ctype, raw)
    return json.loads(raw)


def test_widevine_signature_is_shaka_packagers_aes_scheme():
    # Independent implementation (pycryptodome): AES-256-CBC(key, iv, PKCS#7(SHA-1(message))).
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    message = json.dumps(wv_inner()).encode()
    expected = AES.new(WV_KEY, AES.MODE_CBC, WV_IV).encrypt(pad(hashlib.sha1(message).digest(), 16))
    assert lf.widevine_signature(message, WV_KEY, WV_IV) == expected
    outer = json.loads(lf.sign_widevine_request(message, "widevine_test", WV_KEY, WV_IV))
    assert set(outer) == {"request", "signature", "signer"}
    assert base64.b64decode(outer["request"]) == message
    assert base64.b64decode(outer["signature"]) == expected


def test_widevine_licence_accepted_and_recorded(fakes):
    fakes.clear()
    answer = wv_post(fakes, wv_inner())
    assert answer["status"] == "OK", answer
    expected = FakeLicenceServices.widevine_licence(CHALLENGE, [(KID2.bytes, KEY2), (KID1.bytes, KEY1)])
    assert base64.b64decode(answer["license"]) == expected
    assert expected.startswith(b"FAKE-WV-LICENCE\0")
    # keys are sorted by kid: the order given does not matter
    assert expected == FakeLicenceServices.widevine_licence(CHALLENGE, [(KID1.bytes, KEY1), (KID2.bytes, KEY2)])
    assert answer["license_metadata"]["license_type"] == "STREAMING"
    [rec] = fakes.requests_for("widevine")
    assert rec["accepted"] is True and rec["reason"] is None
    assert rec["parsed"]["signer"] == "widevine_test"
    assert rec["parsed"]["request"]["policy_overrides"]["license_duration_seconds"] == 3600
    assert rec["parsed"]["fields"]["content_key_specs"][0]["required_output_protection"] == {"hdcp": "HDCP_V2_2"}


def test_widevine_licence_depends_on_challenge_and_keys(fakes):
    a = FakeLicenceServices.widevine_licence(CHALLENGE, [(KID1.bytes, KEY1)])
    assert a != FakeLicenceServices.widevine_licence(CHALLENGE + b"x", [(KID1.bytes, KEY1)])
    assert a != FakeLicenceServices.widevine_licence(CHALLENGE, [(KID1.bytes, KEY2)])
    with pytest.raises(ValueError):
        FakeLicenceServices.widevine_licence(CHALLENGE, [(b"short", KEY1)])


def test_widevine_service_certificate_request(fakes):
    answer = wv_post(fakes, {"payload": b64(b"\x08\x04"), "provider": "widevine_test"})
    assert answer["status"] == "OK"
    assert base64.b64decode(answer["license"]) == lf.WIDEVINE_SERVICE_CERTIFICATE


def test_widevine_service_certificate_is_signed_by_the_widevine_root():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from pywidevine.cdm import Cdm
    from pywidevine.license_protocol_pb2 import DrmCertificate, SignedDrmCertificate, SignedMessage

    msg = SignedMessage()
    msg.ParseFromString(lf.WIDEVINE_SERVICE_CERTIFICATE)
    assert msg.type == SignedMessage.MessageType.SERVICE_CERTIFICATE
    signed = SignedDrmCertificate()
    signed.ParseFromString(msg.msg)
    root_key = serialization.load_der_public_key(Cdm.root_cert.public_key)
    root_key.verify(signed.signature, signed.drm_certificate,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=20), hashes.SHA1())
    cert = DrmCertificate()
    cert.ParseFromString(signed.drm_certificate)
    assert cert.type == DrmCertificate.Type.SERVICE


@pytest.mark.parametrize("case", ["wrong_key", "tampered_request", "tampered_signature", "no_signature"])
def test_widevine_bad_signature_refused(fakes, case):
    inner = json.dumps(wv_inner()).encode()
    outer = json.loads(lf.sign_widevine_request(inner, "widevine_test", WV_KEY, WV_IV))
    if case == "wrong_key":
        outer = json.loads(lf.sign_widevine_request(inner, "widevine_test", ACME_KEY, WV_IV))
    elif case == "tampered_request":
        outer["request"] = b64(inner.replace(b'"can_persist": false', b'"can_persist": true'))
        assert base64.b64decode(outer["request"]) != inner
    elif case == "tampered_signature":
        sig = bytearray(base64.b64decode(outer["signature"]))
        sig[0] ^= 1
        outer["signature"] = b64(bytes(sig))
    else:
        del outer["signature"]
    status, _, raw = post(fakes, "/widevine/cenc/getlicense/widevine_test", json.dumps(outer).encode())
    answer = json.loads(raw)
    assert status == 200 and answer["status"] == "SIGNATURE_FAILED", answer
    assert "license" not in answer and answer["status_message"]
    assert fakes.requests[-1]["accepted"] is False
    assert fakes.requests[-1]["reason"].startswith("SIGNATURE_FAILED")


def test_widevine_unsigned_inner_json_refused(fakes):
    # The inner request posted as is (no request/signature/signer envelope).
    status, _, raw = post(fakes, "/widevine/cenc/getlicense/widevine_test", json.dumps(wv_inner()).encode())
    answer = json.loads(raw)
    assert answer["status"] == "MALFORMED_REQUEST" and "not a signed request" in answer["status_message"]


def test_widevine_signer_must_be_known_and_match_url(fakes):
    assert wv_post(fakes, wv_inner(), provider="nobody", key=ACME_KEY, iv=ACME_IV)["status"] == "ACCESS_DENIED"
    answer = wv_post(fakes, wv_inner(provider="acme"), provider="acme", key=ACME_KEY, iv=ACME_IV,
                     url_provider="widevine_test")
    assert answer["status"] == "ACCESS_DENIED"
    # signed by acme for acme's URL works with acme's key
    assert wv_post(fakes, wv_inner(provider="acme"), provider="acme", key=ACME_KEY, iv=ACME_IV)["status"] == "OK"


def test_widevine_missing_provider(fakes):
    inner = wv_inner()
    del inner["provider"]
    assert wv_post(fakes, inner)["status"] == "PROVIDER_MISSING"


@pytest.mark.parametrize("payload", [None, ""])
def test_widevine_missing_or_empty_challenge(fakes, payload):
    inner = wv_inner()
    if payload is None:
        del inner["payload"]
    else:
        inner["payload"] = payload
    assert wv_post(fakes, inner)["status"] == "INVALID_LICENSE_CHALLENGE"


@pytest.mark.parametrize("mutate, needle", [
    (lambda i: i.update(renewal_interval_seconds=60), "unknown field 'renewal_interval_seconds'"),
    (lambda i: i["policy_overrides"].update(renewal_interval_seconds=60), "policy_overrides: unknown field"),
    (lambda i: i["content_key_specs"][0].update(kid="x"), "unknown field 'kid'"),
    (lambda i: i.update(session_init={"purchase_token": "x"}), "session_init: unknown field 'purchase_token'"),
    (lambda i: i["policy_overrides"].update(can_persist="false"), "expected true or false"),
    (lambda i: i["policy_overrides"].update(license_duration_seconds=1.5), "expected an integer"),
    (lambda i: i["policy_overrides"].update(license_duration_seconds=True), "expected an integer"),
    (lambda i: i["content_key_specs"][0].update(security_level="HW_SECURE_ALL"), "expected an integer"),
    (lambda i: i["content_key_specs"][0].update(track_type="4K"), "expected one of SD, HD"),
    (lambda i: i["content_key_specs"][0]["required_output_protection"].update(hdcp="HDCP_V3"), "HDCP_NONE"),
    (lambda i: i.update(content_key_specs={"key_id": "x"}), "expected a JSON array"),
    (lambda i: i.update(payload="***"), "invalid base64"),
    (lambda i: i.update(provider=7), "expected a string"),
])
def test_widevine_schema_refusals(fakes, mutate, needle):
    inner = wv_inner()
    mutate(inner)
    answer = wv_post(fakes, inner)
    assert answer["status"] == "MALFORMED_REQUEST", answer
    assert needle in answer["status_message"], answer


def test_widevine_proto3_json_spellings_accepted(fakes):
    # proto3 JSON: lowerCamelCase names and int64 as decimal strings are valid spellings.
    inner = wv_inner()
    inner["contentKeySpecs"] = inner.pop("content_key_specs")
    inner["policyOverrides"] = inner.pop("policy_overrides")
    inner["policyOverrides"]["licenseDurationSeconds"] = "3600"
    del inner["policyOverrides"]["license_duration_seconds"]
    inner["session_init"] = {"provider_client_token": b64(b"tok"), "override_provider_client_token": True}
    answer = wv_post(fakes, inner)
    assert answer["status"] == "OK", answer
    fields = fakes.requests[-1]["parsed"]["fields"]
    assert fields["policy_overrides"]["license_duration_seconds"] == 3600
    assert "content_key_specs" in fields


def test_widevine_same_field_twice_refused(fakes):
    inner = wv_inner()
    inner["contentKeySpecs"] = inner["content_key_specs"]
    assert wv_post(fakes, inner)["status"] == "MALFORMED_REQUEST"


def test_widevine_keys_required(fakes):
    inner = wv_inner()
    del inner["content_key_specs"]
    answer = wv_post(fakes, inner)
    assert answer["status"] == "INVALID_CONTENT_INFO", answer
    answer = wv_post(fakes, wv_inner(content_key_specs=[{"key_id": b64(KID1.bytes), "track_type": "SD"}]))
    assert answer["status"] == "INVALID_CONTENT_INFO", answer


@pytest.mark.parametrize("spec", [
    {"key_id": b64(KID1.bytes[:15]), "key": b64(KEY1)},
    {"key_id": b64(KID1.bytes), "key": b64(KEY1 + b"x")},
    {"key": b64(KEY1), "track_type": "SD"},
    {"key_id": b64(KID1.bytes), "key": b64(KEY1), "security_level": 6},
])
def test_widevine_bad_key_specs(fakes, spec):
    answer = wv_post(fakes, wv_inner(content_key_specs=[spec]))
    assert answer["status"] == "INVALID_REQUEST", answer


def test_widevine_duplicate_kid_refused(fakes):
    spec = {"key_id": b64(KID1.bytes), "key": b64(KEY1)}
    assert wv_post(fakes, wv_inner(content_key_specs=[spec, spec]))["status"] == "INVALID_REQUEST"


def test_widevine_track_types_and_key_specs_are_exclusive(fakes):
    answer = wv_post(fakes, wv_inner(allowed_track_types="SD_HD"))
    assert answer["status"] == "INVALID_REQUEST"
    assert "only one of allowed_track_types and content_key_specs" in answer["status_message"]


def test_widevine_negative_duration_refused(fakes):
    inner = wv_inner()
    inner["policy_overrides"]["rental_duration_seconds"] = -1
    assert wv_post(fakes, inner)["status"] == "INVALID_REQUEST"


def test_widevine_persistent_licence_metadata(fakes):
    inner = wv_inner()
    inner["policy_overrides"]["can_persist"] = True
    answer = wv_post(fakes, inner)
    assert answer["status"] == "OK" and answer["license_metadata"]["license_type"] == "OFFLINE"


def test_widevine_not_json(fakes):
    status, ctype, raw = post(fakes, "/widevine/cenc/getlicense/widevine_test", b"\x08\x01garbage")
    assert status == 200 and json.loads(raw)["status"] == "MALFORMED_REQUEST"


def test_widevine_strict_challenge_mode():
    from pywidevine.license_protocol_pb2 import SignedMessage

    with FakeLicenceServices({"widevine_test": (WV_KEY, WV_IV)}, strict_widevine_challenge=True) as f:
        assert wv_post(f, wv_inner())["status"] == "INVALID_LICENSE_CHALLENGE"
        msg = SignedMessage(type=SignedMessage.MessageType.LICENSE_REQUEST, msg=b"\x12\x00", signature=b"s" * 256)
        good = msg.SerializeToString()
        answer = wv_post(f, wv_inner(payload=b64(good)))
        assert answer["status"] == "OK"
        assert base64.b64decode(answer["license"]) == FakeLicenceServices.widevine_licence(
            good, [(KID1.bytes, KEY1), (KID2.bytes, KEY2)])


# ---------------------------------------------------------------------------------------------
# PlayReady: challenges
# ---------------------------------------------------------------------------------------------

PR_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{lf.PR_SOAP_ACTION}"'}


def insert_customdata_header(envelope: bytes, json_text: str) -> bytes:
    """What a proxy does for the SDK server: a CustomData block in the SOAP Header, the signed
    Body left byte for byte."""
    text = envelope.decode()
    prefix = re.search(r"<([A-Za-z_][\w.-]*):Envelope\b", text).group(1)
    block = (f'<CustomData xmlns="{lf.KEYPLEX_CUSTOMDATA_NS}">'
             f"{json_text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</CustomData>")
    m = re.search(rf"<{prefix}:Header\b[^>]*?(/?)>", text)
    if m and m.group(1) == "/":
        return (text[:m.start()] + f"<{prefix}:Header>{block}</{prefix}:Header>" + text[m.end():]).encode()
    if m:
        return (text[:m.end()] + block + text[m.end():]).encode()
    i = text.index(f"<{prefix}:Body")
    return (text[:i] + f"<{prefix}:Header>{block}</{prefix}:Header>" + text[i:]).encode()


def test_made_challenge_is_canonical_and_structured():
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]), custom_data="cd")
    root = etree.fromstring(env)
    la = root.find(".//p:LA", NS)
    assert la.get("Id") == "SignedData"
    assert root.find("soap:Body/p:AcquireLicense/p:challenge/m:Challenge/ds:Signature/ds:SignedInfo", NS) is not None
    # the LA bytes sent are its canonical form: what is signed is what is sent
    assert etree.tostring(la, method="c14n", exclusive=True) in env
    digest = base64.b64decode(root.findtext(".//ds:DigestValue", namespaces=NS))
    assert digest == hashlib.sha256(etree.tostring(la, method="c14n", exclusive=True)).digest()
    assert len(base64.b64decode(root.findtext(".//ds:PublicKey", namespaces=NS))) == 64
    assert len(base64.b64decode(root.findtext(".//ds:SignatureValue", namespaces=NS))) == 64


def test_pyplayready_built_challenge_verifies():
    # pyplayready's own challenge builder (an independent implementation) passes the fake's checks.
    from pyplayready.crypto.ecc_key import ECCKey
    from pyplayready.misc.soap_message import SoapMessage
    from pyplayready.system.builder import XmlBuilder

    msg = XmlBuilder.AcquireLicenseMessage(lf.make_wrm_header([KID1, KID2]), 4, b"w" * 64, b"c" * 256,
                                           ECCKey.generate(), client_info="10.0.16384.10011", custom_data="x")
    ch = lf._verify_challenge(lf._parse_envelope(SoapMessage.create(msg).dumps().encode()))
    assert ch.wrm_kids == [str(KID1), str(KID2)]


@pytest.mark.parametrize("version", ["4.0.0.0", "4.1.0.0", "4.2.0.0", "4.3.0.0"])
def test_wrm_header_kids_every_version(version):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1], version=version))
    assert lf._verify_challenge(lf._parse_envelope(env)).wrm_kids == [str(KID1)]


def test_playready_licence_same_for_forwarded_envelope():
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    fwd = insert_customdata_header(env, "{}")
    keys = [(KID1.bytes, KEY1)]
    assert FakeLicenceServices.playready_licence(env, keys) == FakeLicenceServices.playready_licence(fwd, keys)
    other = lf.make_playready_challenge(lf.make_wrm_header([KID1]))  # new nonce
    assert FakeLicenceServices.playready_licence(other, keys) != FakeLicenceServices.playready_licence(env, keys)


def test_key_seed_derivation_is_the_documented_algorithm():
    # Re-derived here from the spec's description (sha A, B, C over seed/kid, xor of the halves).
    seed, kid = lf.PLAYREADY_TEST_KEY_SEED, KID1
    k = kid.bytes_le
    parts = [hashlib.sha256(x).digest() for x in (seed + k, seed + k + seed, seed + k + seed + k)]
    expected = bytes(
        parts[0][i] ^ parts[0][16 + i] ^ parts[1][i] ^ parts[1][16 + i] ^ parts[2][i] ^ parts[2][16 + i]
        for i in range(16))
    assert lf.playready_key_from_seed(seed, kid) == expected
    assert base64.b64encode(seed).decode() == "XVBovsmzhP9gRIZxWfFta3VVRPzVEWmJsazEJ46I"


# ---------------------------------------------------------------------------------------------
# PlayReady test server (cfg query string)
# ---------------------------------------------------------------------------------------------

def parse_answer(raw: bytes):
    return etree.fromstring(raw)


def licence_from_answer(raw: bytes) -> bytes:
    root = parse_answer(raw)
    path = ("soap:Body/p:AcquireLicenseResponse/p:AcquireLicenseResult/m:Response/p:LicenseResponse/"
            "p:Licenses/p:License")
    [lic] = root.findall(path, NS)
    return base64.b64decode(lic.text)


def fault_of(raw: bytes):
    root = parse_answer(raw)
    fault = root.find("soap:Body/soap:Fault", NS)
    assert fault is not None, raw
    return fault.findtext("faultcode"), fault.findtext("faultstring"), fault.findtext("detail/Exception/StatusCode")


def test_playready_test_server_licence(fakes):
    fakes.clear()
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    cfg = f"(kid:{str(KID1).upper()},contentkey:{b64(KEY1)},sl:2000,persist:true,firstexp:60)"
    status, ctype, raw = post(fakes, f"/playready/rightsmanager.asmx?cfg={cfg}", env, PR_HEADERS)
    assert status == 200 and ctype == "text/xml; charset=utf-8", raw
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(env, [(KID1.bytes, KEY1)])
    root = parse_answer(raw)
    nonce = etree.fromstring(env).findtext(".//p:LicenseNonce", namespaces=NS)
    assert root.findtext(".//p:LicenseResponse/p:LicenseNonce", namespaces=NS) == nonce
    [rec] = fakes.requests_for("playready")
    assert rec["accepted"] is True
    [group] = rec["parsed"]["groups"]
    assert group == {"kid": str(KID1), "kid_as_sent": str(KID1).upper(), "contentkey": b64(KEY1),
                     "sl": 2000, "persist": True, "firstexp": 60}
    assert rec["parsed"]["keys"] == [{"kid": str(KID1), "key": b64(KEY1), "source": "contentkey"}]


def test_playready_cfg_kid_base64_is_guid_byte_order(fakes):
    # The documented example: kid:YXg64czYhEKSRXyDXr3p8A== is GUID e13a7861-d8cc-4284-9245-7c835ebde9f0.
    [g] = lf.parse_playready_cfg("(kid:YXg64czYhEKSRXyDXr3p8A==)")
    assert g["kid"] == "e13a7861-d8cc-4284-9245-7c835ebde9f0"
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    cfg = f"(kid:{b64(KID1.bytes_le)},contentkey:{b64(KEY1)})"
    status, _, raw = post(fakes, f"/playready/rightsmanager.asmx?cfg={cfg}", env, PR_HEADERS)
    assert status == 200
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(env, [(KID1.bytes, KEY1)])


def test_playready_cfg_several_keys(fakes):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1, KID2]))
    cfg = f"(kid:{KID1},contentkey:{b64(KEY1)},sl:3000),(kid:{KID2},contentkey:{b64(KEY2)},sl:2000)"
    status, _, raw = post(fakes, f"/playready/rightsmanager.asmx?cfg={cfg}", env, PR_HEADERS)
    assert status == 200, raw
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(
        env, [(KID1.bytes, KEY1), (KID2.bytes, KEY2)])


def test_playready_cfg_plus_in_base64_is_kept(fakes):
    key = base64.b64decode("+/+/+/+/+/+/+/+/+/+/+w==")
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, raw = post(fakes, f"/playready/rightsmanager.asmx?cfg=(kid:header,contentkey:{b64(key)})",
                          env, PR_HEADERS)
    assert status == 200, raw
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(env, [(KID1.bytes, key)])


def test_playready_no_cfg_uses_test_key_seed(fakes):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx", env, PR_HEADERS)
    assert status == 200, raw
    derived = lf.playready_key_from_seed(lf.PLAYREADY_TEST_KEY_SEED, KID1)
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(env, [(KID1.bytes, derived)])
    assert fakes.requests[-1]["parsed"]["keys"][0]["source"] == "keyseed"


def test_playready_fault_format(fakes):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, ctype, raw = post(fakes, "/playready/rightsmanager.asmx?cfg=(errorcode:0x8004c065)", env, PR_HEADERS)
    assert status == 500 and ctype == "text/xml; charset=utf-8"
    code, string, status_code = fault_of(raw)
    assert code == "soap:Server" and string.startswith("System.Web.Services.Protocols.SoapException:")
    assert status_code == "0x8004c065"
    # and a PlayReady client library reads it as the DRM error it is
    from pyplayready.misc.exceptions import ServerException
    from pyplayready.misc.soap_message import SoapMessage
    with pytest.raises(ServerException, match="DRM_E_DEVCERT_REVOKED"):
        SoapMessage.loads(raw).raise_faults()


def tamper_la_with_customdata(env: bytes) -> bytes:
    # Insert a CustomData element into the signed LA (what a naive proxy would do).
    return env.replace(b"<LicenseNonce>", b"<CustomData>{&quot;keys&quot;:[]}</CustomData><LicenseNonce>", 1)


@pytest.mark.parametrize("route", ["/playready/rightsmanager.asmx?cfg=(kid:header)", "/playready-sdk/rightsmanager.asmx"])
def test_playready_la_modified_after_signing_refused(fakes, route):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    if "sdk" in route:
        env = insert_customdata_header(env, json.dumps(customdata()))
    tampered = tamper_la_with_customdata(env)
    assert tampered != env
    status, ctype, raw = post(fakes, route, tampered, PR_HEADERS)
    assert status == 500 and ctype.startswith("text/xml")
    code, string, status_code = fault_of(raw)
    assert code == "soap:Server" and status_code == "0x8004c601"
    assert "LA modified after signing" in string
    assert fakes.requests[-1]["accepted"] is False


@pytest.mark.parametrize("case", ["signature", "public_key", "digest", "signed_info"])
def test_playready_signature_checks(fakes, case):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    root = etree.fromstring(env)
    if case == "signature":
        el = root.find(".//ds:SignatureValue", NS)
        sig = bytearray(base64.b64decode(el.text))
        sig[5] ^= 1
        el.text = b64(bytes(sig))
    elif case == "public_key":
        other = etree.fromstring(lf.make_playready_challenge(lf.make_wrm_header([KID1])))
        root.find(".//ds:PublicKey", NS).text = other.findtext(".//ds:PublicKey", namespaces=NS)
    elif case == "digest":
        root.find(".//ds:DigestValue", NS).text = b64(bytes(32))
    else:
        root.find(".//ds:Reference", NS).set("URI", "#Other")
    body = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx?cfg=(kid:header)", body, PR_HEADERS)
    assert status == 500
    assert fault_of(raw)[2] == "0x8004c601"


def test_playready_reserialised_envelope_still_verifies(fakes):
    # Canonical bytes, not raw bytes, are signed: re-serialising the envelope is harmless.
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    body = etree.tostring(etree.fromstring(env), xml_declaration=True, encoding="utf-8")
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx?cfg=(kid:header)", body, PR_HEADERS)
    assert status == 200, raw


@pytest.mark.parametrize("headers, expect", [
    ({"Content-Type": "text/xml; charset=utf-8"}, "SOAPAction"),
    ({"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"urn:other"'}, "SOAPAction"),
])
def test_playready_soapaction_required(fakes, headers, expect):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx?cfg=(kid:header)", env, headers)
    assert status == 500
    code, string, _ = fault_of(raw)
    assert code == "soap:Client" and "Server did not recognize the value of HTTP Header SOAPAction" in string


def test_playready_wrong_content_type(fakes):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, _ = post(fakes, "/playready/rightsmanager.asmx", env,
                        {"Content-Type": "application/octet-stream", "SOAPAction": PR_HEADERS["SOAPAction"]})
    assert status == 415


@pytest.mark.parametrize("body, code", [
    (b"", "0x8004c601"),
    (b"<not xml", "0x8004c601"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>', "0x8004c601"),
    (f'<soap:Envelope xmlns:soap="{lf.SOAP11_NS}"><soap:Body><Other/></soap:Body></soap:Envelope>'.encode(), "0x8004c601"),
])
def test_playready_malformed_envelopes(fakes, body, code):
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 500 and fault_of(raw)[2] == code


def test_playready_soap12_envelope(fakes):
    body = f'<e:Envelope xmlns:e="{lf.SOAP12_NS}"><e:Body/></e:Envelope>'.encode()
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 500 and fault_of(raw)[0] == "soap:VersionMismatch"


@pytest.mark.parametrize("cfg, needle", [
    ("(kid:header,color:red)", "unknown parameter 'color'"),
    ("(sl:1000)", "sl must be 150, 2000 or 3000"),
    ("(persist:yes)", "persist must be true or false"),
    ("(contentkey:AAAA)", "contentkey must be 16 bytes"),
    ("(kid:not-a-guid!)", "kid is not valid base64"),
    ("(begindate:2017-01-01)", "begindate must be yyyymmdd"),
    ("(firstexp:-5)", "firstexp must be a non-negative integer"),
    ("(kid:header,sl:2000", "expected ')'"),
    ("kid:header", "expected '('"),
    ("(kid:header,kid:header)", "given twice"),
    ("(enddate:20170101,expiration:20170101)", "same parameter"),
    (f"(kid:{KID2})", "is not in the WRMHEADER"),
    (f"(kid:{KID1}),(kid:{KID1})", "requested twice"),
    ("(sl:2000),(sl:3000)", "needs its own kid"),
])
def test_playready_cfg_refusals(fakes, cfg, needle):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, raw = post(fakes, f"/playready/rightsmanager.asmx?cfg={cfg}", env, PR_HEADERS)
    assert status == 500, raw
    _, string, code = fault_of(raw)
    assert code == "0x8004c604" and needle in string, string


def test_playready_cfg_spaces_refused():
    with pytest.raises(lf.Refused, match="spaces"):
        lf.parse_playready_cfg("(kid:header, sl:2000)")


def test_playready_kid_header_needs_single_kid(fakes):
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1, KID2]))
    status, _, raw = post(fakes, "/playready/rightsmanager.asmx?cfg=(kid:header)", env, PR_HEADERS)
    assert status == 500 and "exactly one KID" in fault_of(raw)[1]


# ---------------------------------------------------------------------------------------------
# PlayReady Server SDK licence server with keyplex CustomData in the SOAP header
# ---------------------------------------------------------------------------------------------

def customdata(**over):
    doc = {
        "version": 1, "content_id": "movie-1", "user": "user-42",
        "keys": [{"kid": str(KID1), "kid_guid_le": b64(KID1.bytes_le), "key": b64(KEY1), "track_type": "HD"},
                 {"kid": str(KID2), "kid_guid_le": b64(KID2.bytes_le), "key": b64(KEY2)}],
        "policy": {"security_level": 2000, "persistent": False, "licence_duration_seconds": 3600,
                   "renewal_interval_seconds": 60, "hdcp": "HDCP_V1"},
    }
    doc.update(over)
    return doc


def test_playready_sdk_header_customdata_accepted(fakes):
    fakes.clear()
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1, KID2]))
    body = insert_customdata_header(player, json.dumps(customdata(content_id="a&b<c>")))
    status, ctype, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 200 and ctype == "text/xml; charset=utf-8", raw
    # the licence is bound to the player's signed LA, whatever the proxy added around it
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(
        player, [(KID2.bytes, KEY2), (KID1.bytes, KEY1)])
    [rec] = fakes.requests_for("playready-sdk")
    assert rec["accepted"] is True
    assert rec["parsed"]["customdata"]["content_id"] == "a&b<c>"
    assert rec["parsed"]["customdata"]["policy"]["hdcp"] == "HDCP_V1"
    assert rec["parsed"]["customdata"]["keys"][0] == {"kid": str(KID1), "key": b64(KEY1), "track_type": "HD"}


def test_playready_sdk_inside_existing_header(fakes):
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    with_header = player.replace(b"<soap:Body>", b"<soap:Header><Other xmlns=\"urn:x\">1</Other></soap:Header><soap:Body>")
    body = insert_customdata_header(with_header, json.dumps(customdata(keys=customdata()["keys"][:1])))
    assert body.count(b"<soap:Header>") == 1
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 200, raw
    assert licence_from_answer(raw) == FakeLicenceServices.playready_licence(player, [(KID1.bytes, KEY1)])


def test_playready_sdk_other_soap_prefix(fakes):
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    renamed = player.replace(b"soap:", b"s:").replace(b"xmlns:soap=", b"xmlns:s=")
    body = insert_customdata_header(renamed, json.dumps(customdata()))
    assert b"<s:Header>" in body
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 200, raw


def test_playready_sdk_customdata_in_la_only_refused(fakes):
    # A client's own (signed) LA CustomData is not where the SDK server reads keyplex's keys.
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1]), custom_data=json.dumps(customdata()))
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", player, PR_HEADERS)
    assert status == 500 and "no <CustomData" in fault_of(raw)[1]


def test_playready_sdk_header_after_body_refused(fakes):
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    block = f'<soap:Header><CustomData xmlns="{lf.KEYPLEX_CUSTOMDATA_NS}">{{}}</CustomData></soap:Header>'
    body = player.replace(b"</soap:Body>", b"</soap:Body>" + block.encode())
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 500 and fault_of(raw)[2] == "0x8004c601"


def _bad_keys(**k):
    key = {"kid": str(KID1), "kid_guid_le": b64(KID1.bytes_le), "key": b64(KEY1)}
    key.update(k)
    return [key]


@pytest.mark.parametrize("doc, needle", [
    (customdata(extra=1), "unknown field(s) extra"),
    (customdata(version=2), "version must be 1"),
    (customdata(version=True), "version must be 1"),
    ({k: v for k, v in customdata().items() if k != "content_id"}, "missing field(s) content_id"),
    (customdata(content_id=7), "content_id must be a non-empty string"),
    (customdata(keys=[]), "1 to 64 keys"),
    (customdata(keys=_bad_keys() * 65), "1 to 64 keys"),
    (customdata(keys=_bad_keys(kid_guid_le=b64(KID1.bytes))), "kid_guid_le does not encode kid"),
    (customdata(keys=_bad_keys(kid="9eb4050de44b4802932e27d75083e266")), "8-4-4-4-12"),
    (customdata(keys=_bad_keys(key=b64(KEY1[:8]))), "key must be 16 bytes"),
    (customdata(keys=_bad_keys(iv=b64(bytes(16)))), "unknown field(s) iv"),
    (customdata(keys=_bad_keys() * 2), "listed twice"),
    (customdata(policy={"persistent": "false"}), "persistent must be true or false"),
    (customdata(policy={"security_level": 2000}), "missing field(s) persistent"),
    (customdata(policy={"persistent": False, "security_level": 1000}), "150, 2000 or 3000"),
    (customdata(policy={"persistent": False, "licence_duration_seconds": -1}), ">= 0"),
    (customdata(policy={"persistent": False, "renewal_interval_seconds": 0}), ">= 1"),
    (customdata(policy={"persistent": False, "playback_duration_seconds": "60"}), "must be an integer"),
    (customdata(policy={"persistent": False, "hdcp": "HDCP_V9"}), "policy.hdcp"),
    (customdata(policy={"persistent": False, "license_duration_seconds": 60}), "unknown field(s) license_duration"),
])
def test_playready_sdk_customdata_refusals(fakes, doc, needle):
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1, KID2]))
    body = insert_customdata_header(player, json.dumps(doc))
    status, ctype, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 500 and ctype.startswith("text/xml")
    _, string, code = fault_of(raw)
    assert code == "0x8004c604" and needle in string, string


def test_playready_sdk_not_json(fakes):
    player = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", insert_customdata_header(player, "kid=1"),
                          PR_HEADERS)
    assert status == 500 and "not JSON" in fault_of(raw)[1]


def test_playready_sdk_keys_must_meet_the_header(fakes):
    player = lf.make_playready_challenge(lf.make_wrm_header([KID2]))
    body = insert_customdata_header(player, json.dumps(customdata(keys=customdata()["keys"][:1])))
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", body, PR_HEADERS)
    assert status == 500 and "WRMHEADER" in fault_of(raw)[1]


# ---------------------------------------------------------------------------------------------
# FairPlay
# ---------------------------------------------------------------------------------------------

SPC = b"\x00\x00\x00\x01" + bytes(range(200))
FPS_KEY = bytes.fromhex("3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c")
FPS_IV = bytes.fromhex("d5fbd6b82ed93e4ef98ae40931ee33b7")


def fps_doc(**over):
    doc = {"spc": b64(SPC), "assetId": "movie-1", "key": FPS_KEY.hex(), "iv": FPS_IV.hex().upper(),
           "leaseDurationSeconds": 3600, "rentalDurationSeconds": 86400, "persistent": False, "hdcpType": 0}
    doc.update(over)
    return doc


def test_fairplay_json_accepted(fakes):
    fakes.clear()
    status, ctype, raw = post(fakes, "/fairplay/json", json.dumps(fps_doc()).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200 and ctype == "application/json"
    ckc = base64.b64decode(json.loads(raw)["ckc"])
    assert ckc == FakeLicenceServices.fairplay_ckc(SPC, FPS_KEY, FPS_IV, "movie-1")
    assert ckc.startswith(b"FAKE-FPS-CKC\0")
    [rec] = fakes.requests_for("fairplay-json")
    assert rec["accepted"] is True
    assert rec["parsed"]["fields"]["leaseDurationSeconds"] == 3600
    assert rec["parsed"]["fields"]["hdcpType"] == 0
    # minimal form
    doc = {k: fps_doc()[k] for k in ("spc", "assetId", "key", "iv")}
    status, _, raw = post(fakes, "/fairplay/json", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert status == 200


@pytest.mark.parametrize("doc, needle", [
    (fps_doc(kid=KID1.hex), "unknown field(s): kid"),
    ({k: v for k, v in fps_doc().items() if k != "assetId"}, "missing field(s): assetId"),
    (fps_doc(assetId=""), "assetId"),
    (fps_doc(spc=""), "spc is empty"),
    (fps_doc(spc="not base64!"), "spc is not valid base64"),
    (fps_doc(key="zz" * 16), "key must be 32 hex digits"),
    (fps_doc(iv=FPS_IV.hex()[:30]), "iv must be 32 hex digits"),
    (fps_doc(key=b64(FPS_KEY)), "key must be 32 hex digits"),
    (fps_doc(leaseDurationSeconds=-1), "leaseDurationSeconds"),
    (fps_doc(rentalDurationSeconds="60"), "rentalDurationSeconds"),
    (fps_doc(persistent="false"), "persistent must be true or false"),
    (fps_doc(hdcpType=2), "hdcpType"),
    (fps_doc(hdcpType=True), "hdcpType"),
])
def test_fairplay_json_refusals(fakes, doc, needle):
    status, ctype, raw = post(fakes, "/fairplay/json", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert status == 400 and ctype == "application/json"
    assert needle in json.loads(raw)["error"]
    assert fakes.requests[-1]["accepted"] is False


def test_fairplay_json_content_type_and_shape(fakes):
    status, _, raw = post(fakes, "/fairplay/json", json.dumps(fps_doc()).encode(), {"Content-Type": "text/plain"})
    assert status == 400 and "application/json" in json.loads(raw)["error"]
    status, _, raw = post(fakes, "/fairplay/json", b"[1]", {"Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(raw)


def fps_headers(**over):
    h = {"Content-Type": "application/octet-stream", "X-Asset-Id": "movie-1", "X-Content-Key": FPS_KEY.hex(),
         "X-Content-IV": FPS_IV.hex(), "X-Lease-Duration-Seconds": "3600", "X-Persistent": "true",
         "X-HDCP-Type": "-1"}
    h.update(over)
    return {k: v for k, v in h.items() if v is not None}


def test_fairplay_binary_accepted(fakes):
    fakes.clear()
    status, ctype, raw = post(fakes, "/fairplay/binary", SPC, fps_headers())
    assert status == 200 and ctype == "application/octet-stream"
    assert raw == FakeLicenceServices.fairplay_ckc(SPC, FPS_KEY, FPS_IV, "movie-1")
    [rec] = fakes.requests_for("fairplay-binary")
    assert rec["parsed"]["fields"]["persistent"] is True and rec["parsed"]["fields"]["hdcpType"] == -1


@pytest.mark.parametrize("body, headers, needle", [
    (SPC, fps_headers(**{"Content-Type": "application/json"}), "application/octet-stream"),
    (b"", fps_headers(), "spc is empty"),
    (SPC, fps_headers(**{"X-Asset-Id": None}), "missing header X-Asset-Id"),
    (SPC, fps_headers(**{"X-Content-Key": "00"}), "key must be 32 hex digits"),
    (SPC, fps_headers(**{"X-Content-IV": None}), "missing header X-Content-IV"),
    (SPC, fps_headers(**{"X-Persistent": "1"}), "X-Persistent"),
    (SPC, fps_headers(**{"X-HDCP-Type": "2"}), "X-HDCP-Type"),
    (SPC, fps_headers(**{"X-Lease-Duration-Seconds": "-3"}), "X-Lease-Duration-Seconds"),
    (SPC, fps_headers(**{"X-Rental-Duration-Seconds": "1h"}), "X-Rental-Duration-Seconds"),
])
def test_fairplay_binary_refusals(fakes, body, headers, needle):
    status, ctype, raw = post(fakes, "/fairplay/binary", body, headers)
    assert status == 400 and ctype.startswith("text/plain")
    assert needle in raw.decode()


# ---------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------

def test_unknown_route_and_method(fakes):
    status, _, _ = post(fakes, "/nowhere", b"x")
    assert status == 404 and fakes.requests[-1]["route"] == "unknown"
    conn = http.client.HTTPConnection("127.0.0.1", fakes.port, timeout=10)
    conn.request("GET", "/fairplay/json")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "POST"
    resp.read()
    conn.close()


def test_injected_failures(fakes):
    fakes.fail_next("widevine")
    assert wv_post(fakes, wv_inner())["status"] == "INTERNAL_ERROR"
    assert fakes.requests[-1]["reason"] == "injected failure"
    assert wv_post(fakes, wv_inner())["status"] == "OK"
    fakes.fail_next("fairplay-binary", 2, http_status=503)
    assert post(fakes, "/fairplay/binary", SPC, fps_headers())[0] == 503
    assert post(fakes, "/fairplay/binary", SPC, fps_headers())[0] == 503
    assert post(fakes, "/fairplay/binary", SPC, fps_headers())[0] == 200
    fakes.fail_next("playready-sdk")
    env = lf.make_playready_challenge(lf.make_wrm_header([KID1]))
    status, _, raw = post(fakes, "/playready-sdk/rightsmanager.asmx", env, PR_HEADERS)
    assert status == 500 and fault_of(raw)[2] == "0x8004c600"
    with pytest.raises(ValueError):
        fakes.fail_next("nowhere")


def test_records_are_json_serialisable(fakes):
    for rec in fakes.requests:
        json.dumps({k: v for k, v in rec.items() if k not in ("body", "response")})
        assert {"route", "accepted", "reason", "parsed"} <= set(rec)


def test_url_and_restart():
    f = FakeLicenceServices()
    f.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", f.url)
    f.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_standalone_entry_point():
    port = _free_port()
    script = Path(lf.__file__)
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        body = lf.sign_widevine_request({"payload": b64(b"\x08\x04"), "provider": "widevine_test"},
                                        "widevine_test", WV_KEY, WV_IV)
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("POST", "/widevine/cenc/getlicense/widevine_test", body=body)
                answer = json.loads(conn.getresponse().read())
                conn.close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer["status"] == "OK"
        assert base64.b64decode(answer["license"]) == lf.WIDEVINE_SERVICE_CERTIFICATE
    finally:
        proc.terminate()
        proc.wait(timeout=10)
