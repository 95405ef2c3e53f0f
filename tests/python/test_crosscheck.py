"""Checks keyplex's CPIX answers with parsers and tools nobody on the project wrote:
the official CPIX XML schemas (lxml), pywidevine, pyplayready, and `cryptography` for the
encrypted key delivery (decrypted with the DASH-IF test certificate Cert1.pfx)."""

import base64
import hashlib
import hmac
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree
from pyplayready import PSSH as PlayReadyPSSH
from pywidevine import PSSH as WidevinePSSH

from conftest import VECTORS

NS = {
    "cpix": "urn:dashif:org:cpix",
    "pskc": "urn:ietf:params:xml:ns:keyprov:pskc",
    "enc": "http://www.w3.org/2001/04/xmlenc#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
WV = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
PR = "9a04f079-9840-4286-ab92-e65be0885f95"
FP = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2"
CK = "e2719d58-a985-b3c9-781a-b030af78d30e"
COMMON = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"

_schemas = {}


def schema(version: str) -> etree.XMLSchema:
    if version not in _schemas:
        parser = etree.XMLParser(load_dtd=True, no_network=True, resolve_entities=True)
        doc = etree.parse(str(VECTORS / "cpix" / f"schema-{version}" / "cpix.xsd"), parser)
        _schemas[version] = etree.XMLSchema(doc)
    return _schemas[version]


def post(server, body: str, tenant="acme", auth=("packager", "s3cret-acme")):
    req = urllib.request.Request(server["base"] + f"/{tenant}/cpix", data=body.encode(), method="POST")
    req.add_header("Content-Type", "application/xml")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def answer(server, body: str, version="2.3") -> etree._Element:
    status, payload = post(server, body)
    assert status == 200, payload
    root = etree.fromstring(payload)
    s = schema(version)
    assert s.validate(root), f"response does not validate against CPIX {version}: {s.error_log}\n{payload.decode()}"
    return root


def drm(system, kid, extra=""):
    return (
        f'<cpix:DRMSystem systemId="{system}" kid="{kid}"><cpix:PSSH/><cpix:ContentProtectionData/>'
        f'<cpix:HLSSignalingData playlist="media"/><cpix:HLSSignalingData playlist="{extra or "master"}"/></cpix:DRMSystem>'
    )


def request(content_id, kids, systems, scheme="cenc", version="2.3", delivery="", periods="", rules="", playlist=""):
    keys = "".join(f'<cpix:ContentKey kid="{k}" commonEncryptionScheme="{scheme}"/>' for k in kids)
    drms = "".join(drm(s, k, playlist) for k in kids for s in systems)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><cpix:CPIX contentId="{content_id}" version="{version}" '
        'xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        f"{delivery}<cpix:ContentKeyList>{keys}</cpix:ContentKeyList><cpix:DRMSystemList>{drms}</cpix:DRMSystemList>"
        f"{periods}{rules}</cpix:CPIX>"
    )


def plain_key(root, kid):
    ck = root.find(f'cpix:ContentKeyList/cpix:ContentKey[@kid="{kid}"]', NS)
    return base64.b64decode(ck.find("cpix:Data/pskc:Secret/pskc:PlainValue", NS).text)


def drm_value(root, system, kid, element):
    node = root.find(f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{system}"][@kid="{kid}"]/cpix:{element}', NS)
    return base64.b64decode(node.text)


def aes_ecb(key, block):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_vod_answer_validates_and_pssh_parses_independently(server, scheme):
    kid = str(uuid.uuid4())
    systems = [WV, PR, CK, COMMON] + ([FP] if scheme == "cbcs" else [])  # FairPlay is cbcs-only
    root = answer(server, request(f"py-vod-{scheme}", [kid], systems, scheme=scheme))
    key = plain_key(root, kid)
    assert len(key) == 16

    wv = WidevinePSSH(base64.b64encode(drm_value(root, WV, kid, "PSSH")).decode(), strict=True)
    assert wv.system_id == uuid.UUID(WV)
    assert [str(k) for k in wv.key_ids] == [kid]

    pr = PlayReadyPSSH(base64.b64encode(drm_value(root, PR, kid, "PSSH")).decode())
    header = pr.wrm_headers[0]
    assert [str(k.value) for k in header.key_ids] == [kid]
    assert header.la_url == "https://acme.example/prls/contentlicenseservice/v1/licenses"
    signed = header.key_ids[0]
    if scheme == "cenc":
        # CHECKSUM = first 8 bytes of AES-ECB(key, KID in GUID order): pyplayready's check
        # and a direct computation must both agree with the delivered key.
        assert signed.verify(key)
        assert signed.checksum == aes_ecb(key, uuid.UUID(kid).bytes_le)[:8]
    else:
        assert header.version.value == "4.3.0.0"
        assert signed.alg_id.value == "AESCBC" and signed.checksum is None

    common = WidevinePSSH(base64.b64encode(drm_value(root, COMMON, kid, "PSSH")).decode())
    assert [str(k) for k in common.key_ids] == [kid]

    if scheme == "cbcs":
        media = drm_value(root, FP, kid, "HLSSignalingData[@playlist='media']").decode()
        assert media.startswith("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://")
        assert 'KEYFORMAT="com.apple.streamingkeydelivery"' in media


def test_live_and_multikey_answers_validate(server):
    kids = [str(uuid.uuid4()) for _ in range(4)]
    periods = "<cpix:ContentKeyPeriodList>" + "".join(
        f'<cpix:ContentKeyPeriod id="p{i}" index="{10 + i}"/>' for i in range(2)
    ) + "</cpix:ContentKeyPeriodList>"
    tracks = ["SD", "HD", "SD", "HD"]
    rules = "<cpix:ContentKeyUsageRuleList>" + "".join(
        f'<cpix:ContentKeyUsageRule kid="{k}" intendedTrackType="{tracks[i]}">'
        f'<cpix:KeyPeriodFilter periodId="p{i // 2}"/><cpix:VideoFilter maxPixels="{442368 if tracks[i] == "SD" else 2073600}"/>'
        "</cpix:ContentKeyUsageRule>"
        for i, k in enumerate(kids)
    ) + "</cpix:ContentKeyUsageRuleList>"
    root = answer(server, request("py-live", kids, [WV, PR], periods=periods, rules=rules))
    keys = {plain_key(root, k) for k in kids}
    assert len(keys) == 4


def test_cpix_2_4_answer_validates_against_2_4_schema(server):
    kid = str(uuid.uuid4())
    root = answer(server, request("py-v24", [kid], [WV, PR], scheme="cbcs", version="2.4", playlist="multiVariant"), "2.4")
    assert root.find("cpix:DRMSystemList/cpix:DRMSystem/cpix:HLSSignalingData[@playlist='multiVariant']", NS) is not None


def test_encrypted_delivery_decrypts_with_cert1(server):
    cert_der = (VECTORS / "cpix" / "dashif-cpix-test-vectors" / "Cert1.cer").read_bytes()
    if cert_der.startswith(b"-----"):
        from cryptography import x509

        cert_der = x509.load_pem_x509_certificate(cert_der).public_bytes(encoding=__import__("cryptography").hazmat.primitives.serialization.Encoding.DER)
    delivery = (
        "<cpix:DeliveryDataList><cpix:DeliveryData><cpix:DeliveryKey><ds:X509Data><ds:X509Certificate>"
        + base64.b64encode(cert_der).decode()
        + "</ds:X509Certificate></ds:X509Data></cpix:DeliveryKey></cpix:DeliveryData></cpix:DeliveryDataList>"
    )
    kids = [str(uuid.uuid4()), str(uuid.uuid4())]
    body = request("py-encrypted", kids, [WV], delivery=delivery)
    root = answer(server, body)
    assert root.find(".//pskc:PlainValue", NS) is None, "keys must not travel in clear"

    pfx = (VECTORS / "cpix" / "dashif-cpix-test-vectors" / "Cert1.pfx").read_bytes()
    private_key, _, _ = pkcs12.load_key_and_certificates(pfx, b"Cert1")
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    dd = root.find("cpix:DeliveryDataList/cpix:DeliveryData", NS)
    doc_key = private_key.decrypt(
        base64.b64decode(dd.find("cpix:DocumentKey/cpix:Data/pskc:Secret/pskc:EncryptedValue/enc:CipherData/enc:CipherValue", NS).text),
        oaep,
    )
    mac_key_cipher = dd.find("cpix:MACMethod/cpix:Key//enc:CipherValue", NS)
    mac_key = private_key.decrypt(base64.b64decode(mac_key_cipher.text), oaep)
    assert len(doc_key) == 32 and len(mac_key) == 64

    decrypted = {}
    for kid in kids:
        secret = root.find(f'cpix:ContentKeyList/cpix:ContentKey[@kid="{kid}"]/cpix:Data/pskc:Secret', NS)
        cipher_value = base64.b64decode(secret.find("pskc:EncryptedValue/enc:CipherData/enc:CipherValue", NS).text)
        value_mac = base64.b64decode(secret.find("pskc:ValueMAC", NS).text)
        assert hmac.compare_digest(hmac.new(mac_key, cipher_value, hashlib.sha512).digest(), value_mac)
        iv, ct = cipher_value[:16], cipher_value[16:]
        dec = Cipher(algorithms.AES(doc_key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        key = unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()
        assert len(key) == 16
        decrypted[kid] = key

    # The same request in clear returns the same keys: encryption is transport only.
    clear = answer(server, request("py-encrypted", kids, [WV]))
    for kid in kids:
        assert plain_key(clear, kid) == decrypted[kid]


def test_pssh_decode_cli_prints_what_pywidevine_sees(server, keyplex_bin):
    kid = str(uuid.uuid4())
    root = answer(server, request("py-cli", [kid], [WV, PR]))
    for system in (WV, PR):
        box = base64.b64encode(drm_value(root, system, kid, "PSSH")).decode()
        out = subprocess.run([str(keyplex_bin), "pssh", "decode", box], capture_output=True, text=True, check=True).stdout
        assert kid in out.lower(), out


def test_keys_never_reach_the_log(server):
    kid = str(uuid.uuid4())
    root = answer(server, request("py-log", [kid], [WV]))
    key = plain_key(root, kid)
    log = server["log"].read_bytes()
    for form in (key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)):
        assert form not in log
