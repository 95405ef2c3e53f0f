"""Faithful fakes of the upstream DRM licence services keyplex's licence proxy talks to.

Written from the services' public documentation (see licence_fakes_SOURCES.md), independently
of keyplex's Rust code. One loopback HTTP server answers five routes:

* ``POST /widevine/cenc/getlicense/{provider}``  Widevine cloud licence proxy protocol
  (signed ``{"request", "signature", "signer"}`` envelope, proto3-JSON inner request);
* ``POST /playready/rightsmanager.asmx?cfg=...``  Microsoft PlayReady test server
  (query-string syntax, SOAP 1.1 AcquireLicense, ASMX faults);
* ``POST /playready-sdk/rightsmanager.asmx``  a PlayReady Server SDK licence server taking keys
  from keyplex's CustomData SOAP header block (keyplex convention);
* ``POST /fairplay/json`` and ``POST /fairplay/binary``  hosted FairPlay key-server forms.

Usage::

    fakes = FakeLicenceServices(widevine_providers={"widevine_test": (key32, iv16)})
    fakes.start(); ...; fakes.stop()

Every request is recorded in ``fakes.requests`` (route, accepted, reason, parsed, ...).
Run standalone: ``python3 tests/python/licence_fakes.py --port 8099``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

__all__ = [
    "FakeLicenceServices",
    "WIDEVINE_SERVICE_CERTIFICATE",
    "WIDEVINE_STATUSES",
    "SHAKA_TEST_PROVIDER",
    "SHAKA_TEST_SIGNING_KEY",
    "SHAKA_TEST_SIGNING_IV",
    "PLAYREADY_TEST_KEY_SEED",
    "make_playready_challenge",
    "make_wrm_header",
    "sign_widevine_request",
    "playready_key_from_seed",
    "playready_kid_guid_le",
]

# ---------------------------------------------------------------------------------------------
# Constants from public documentation
# ---------------------------------------------------------------------------------------------

# Shaka Packager's documented public test provider and signing key (docs/source/tutorials/widevine).
SHAKA_TEST_PROVIDER = "widevine_test"
SHAKA_TEST_SIGNING_KEY = bytes.fromhex("1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9")
SHAKA_TEST_SIGNING_IV = bytes.fromhex("d58ce954203b7c9a9a9d467f59839249")

# Widevine DRM Proxy Integration, "Status Codes".
WIDEVINE_STATUSES = (
    "OK",
    "SIGNATURE_FAILED",
    "INVALID_LICENSE_CHALLENGE",
    "INVALID_CONTENT_INFO",
    "POLICY_UNKNOWN",
    "MALFORMED_REQUEST",
    "INTERNAL_ERROR",
    "PROVIDER_MISSING",
    "INVALID_REQUEST",
    "ACCESS_DENIED",
    "SIGNING_KEY_EXPIRED",
)

# The Widevine service-certificate request a CDM sends first (SignedMessage{type:
# SERVICE_CERTIFICATE_REQUEST}), and the answer of Widevine's licence service to it: a
# SignedMessage{type: SERVICE_CERTIFICATE, msg: SignedDrmCertificate} for license.widevine.com
# (public; the same bytes pywidevine ships as Cdm.common_privacy_cert).
WIDEVINE_SERVICE_CERTIFICATE_REQUEST = b"\x08\x04"


def _load_service_certificate() -> bytes:
    from pywidevine.cdm import Cdm  # the public certificate bytes; pywidevine is a test requirement

    return base64.b64decode(Cdm.common_privacy_cert)


WIDEVINE_SERVICE_CERTIFICATE: bytes = _load_service_certificate()

# PlayReady test server's documented Test Key Seed (testweb.playready.microsoft.com/Server/Service).
PLAYREADY_TEST_KEY_SEED = bytes([
    0x5D, 0x50, 0x68, 0xBE, 0xC9, 0xB3, 0x84, 0xFF, 0x60, 0x44, 0x86, 0x71, 0x59, 0xF1, 0x6D,
    0x6B, 0x75, 0x55, 0x44, 0xFC, 0xD5, 0x11, 0x69, 0x89, 0xB1, 0xAC, 0xC4, 0x27, 0x8E, 0x88,
])

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
PR_PROTOCOLS_NS = "http://schemas.microsoft.com/DRM/2007/03/protocols"
PR_MESSAGES_NS = "http://schemas.microsoft.com/DRM/2007/03/protocols/messages"
PR_HEADER_NS = "http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader"
XMLDSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XMLENC_NS = "http://www.w3.org/2001/04/xmlenc#"
PR_SOAP_ACTION = "http://schemas.microsoft.com/DRM/2007/03/protocols/AcquireLicense"
PR_SIGNATURE_METHOD = "http://schemas.microsoft.com/DRM/2007/03/protocols#ecdsa-sha256"
PR_DIGEST_METHOD = "http://schemas.microsoft.com/DRM/2007/03/protocols#sha256"
PR_C14N_METHOD = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
KEYPLEX_CUSTOMDATA_NS = "urn:keyplex:playready:customdata:1"

# PlayReady server exception codes (PlayReady docs, "Testing Server Exceptions").
DRM_E_SERVER_INTERNAL_ERROR = 0x8004C600
DRM_E_SERVER_INVALID_MESSAGE = 0x8004C601
DRM_E_SERVER_SERVICE_SPECIFIC = 0x8004C604
DRM_E_SERVER_PROTOCOL_VERSION_MISMATCH = 0x8004C60B

WV_LICENCE_PREFIX = b"FAKE-WV-LICENCE\0"
PR_LICENCE_PREFIX = b"FAKE-PR-LICENCE\0"
FPS_CKC_PREFIX = b"FAKE-FPS-CKC\0"

MAX_BODY_BYTES = 1 << 20
HDCP_NAMES = ("HDCP_NONE", "HDCP_V1", "HDCP_V2", "HDCP_V2_1", "HDCP_V2_2", "HDCP_V2_3",
              "HDCP_NO_DIGITAL_OUTPUT")


class Refused(Exception):
    """A request the faked service refuses: ``code`` is the service's own error name/number."""

    def __init__(self, code: Any, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Deterministic "licences"
# ---------------------------------------------------------------------------------------------

def _frame(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _check_keys(keys: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = []
    for kid, key in keys:
        if len(kid) != 16 or len(key) != 16:
            raise ValueError("key ids and keys must be 16 bytes")
        out.append((bytes(kid), bytes(key)))
    return sorted(out)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------------------------
# Widevine: request signing (the scheme of Shaka Packager's AesRequestSigner)
# ---------------------------------------------------------------------------------------------

def widevine_signature(message: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-256-CBC(key, iv, PKCS#7(SHA-1(message))): Widevine's AES request signature."""
    digest = hashlib.sha1(message).digest()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(digest) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def sign_widevine_request(inner: dict | bytes | str, signer: str, key: bytes, iv: bytes) -> bytes:
    """The POST body for ``cenc/getlicense/<signer>``: {"request", "signature", "signer"}."""
    if isinstance(inner, dict):
        inner = json.dumps(inner)
    if isinstance(inner, str):
        inner = inner.encode()
    return json.dumps({
        "request": _b64(inner),
        "signature": _b64(widevine_signature(inner, key, iv)),
        "signer": signer,
    }).encode()


# ---------------------------------------------------------------------------------------------
# Widevine: inner request schema (proto3 JSON mapping of the proxy's request message)
# ---------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"^-?[0-9]+$")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _b64_proto(value: Any, where: str) -> bytes:
    """proto3 JSON bytes: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str):
        raise Refused("MALFORMED_REQUEST", f"{where}: expected a base64 string, got {type(value).__name__}")
    s = value.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("MALFORMED_REQUEST", f"{where}: invalid base64") from None


def _int_proto(value: Any, where: str, bits: int) -> int:
    if isinstance(value, bool):
        raise Refused("MALFORMED_REQUEST", f"{where}: expected an integer, got a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str) and _INT_RE.match(value):
        n = int(value)  # proto3 JSON accepts integers as decimal strings
    else:
        raise Refused("MALFORMED_REQUEST", f"{where}: expected an integer, got {json.dumps(value)}")
    lim = 1 << (bits - 1)
    if not -lim <= n < lim:
        raise Refused("MALFORMED_REQUEST", f"{where}: integer out of range for int{bits}")
    return n


def _bool_proto(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Refused("MALFORMED_REQUEST", f"{where}: expected true or false, got {json.dumps(value)}")
    return value


def _str_proto(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Refused("MALFORMED_REQUEST", f"{where}: expected a string, got {json.dumps(value)}")
    return value


def _enum_proto(names: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str) or value not in names:
            raise Refused("MALFORMED_REQUEST", f"{where}: expected one of {', '.join(names)}, got {json.dumps(value)}")
        return value
    return check


def _i64(v: Any, w: str) -> int:
    return _int_proto(v, w, 64)


def _u32(v: Any, w: str) -> int:
    n = _int_proto(v, w, 64)
    if not 0 <= n < (1 << 32):
        raise Refused("MALFORMED_REQUEST", f"{w}: out of range for uint32")
    return n


def _obj(schema: dict[str, Any]) -> Callable[[Any, str], dict]:
    """A proto message in proto3 JSON: unknown fields refused, lowerCamelCase names accepted,
    null means 'absent'. The result uses the snake_case field names."""
    aliases = {}
    for name in schema:
        aliases[name] = name
        aliases[_camel(name)] = name

    def check(value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise Refused("MALFORMED_REQUEST", f"{where}: expected a JSON object, got {json.dumps(value)[:60]}")
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = aliases.get(k)
            if name is None:
                raise Refused("MALFORMED_REQUEST", f"{where}: unknown field {k!r}")
            if name in out:
                raise Refused("MALFORMED_REQUEST", f"{where}: field {name!r} given twice")
            if v is None:
                continue
            out[name] = schema[name](v, f"{where}.{name}" if where else name)
        return out
    return check


def _list(item: Callable[[Any, str], Any]) -> Callable[[Any, str], list]:
    def check(value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise Refused("MALFORMED_REQUEST", f"{where}: expected a JSON array")
        return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return check


_OUTPUT_PROTECTION = _obj({
    "hdcp": _enum_proto(HDCP_NAMES),
    "cgms_flags": _enum_proto(("CGMS_NONE", "COPY_FREE", "COPY_ONCE", "COPY_NEVER")),
    "hdcp_srm_rule": _enum_proto(("HDCP_SRM_RULE_NONE", "CURRENT_SRM")),
    "disable_analog_output": _bool_proto,
    "disable_digital_output": _bool_proto,
})

TRACK_TYPES = ("SD", "HD", "UHD1", "UHD2", "AUDIO")
ALLOWED_TRACK_TYPES = ("SD_ONLY", "SD_HD", "SD_UHD1", "SD_UHD2")

_CONTENT_KEY_SPEC = _obj({
    "track_type": _enum_proto(TRACK_TYPES),
    "security_level": _u32,
    "required_output_protection": _OUTPUT_PROTECTION,
    "requested_output_protection": _OUTPUT_PROTECTION,
    "key": _b64_proto,
    "key_id": _b64_proto,
    "iv": _b64_proto,
})

# License.Policy of Widevine's licence protocol = the proxy's policy_overrides.
POLICY_OVERRIDE_FIELDS = {
    "can_play": _bool_proto,
    "can_persist": _bool_proto,
    "can_renew": _bool_proto,
    "rental_duration_seconds": _i64,
    "playback_duration_seconds": _i64,
    "license_duration_seconds": _i64,
    "renewal_recovery_duration_seconds": _i64,
    "renewal_server_url": _str_proto,
    "renewal_delay_seconds": _i64,
    "renewal_retry_interval_seconds": _i64,
    "renew_with_usage": _bool_proto,
    "always_include_client_id": _bool_proto,
    "play_start_grace_period_seconds": _i64,
    "soft_enforce_playback_duration": _bool_proto,
    "soft_enforce_rental_duration": _bool_proto,
}

SESSION_INIT_FIELDS = {
    "provider_session_token": _b64_proto,
    "provider_client_token": _b64_proto,
    "override_provider_client_token": _bool_proto,
}

_WIDEVINE_REQUEST = _obj({
    "payload": _b64_proto,
    "content_id": _b64_proto,
    "provider": _str_proto,
    "policy_name": _str_proto,
    "allowed_track_types": _enum_proto(ALLOWED_TRACK_TYPES),
    "content_key_specs": _list(_CONTENT_KEY_SPEC),
    "use_policy_overrides_exclusively": _bool_proto,
    "policy_overrides": _obj(POLICY_OVERRIDE_FIELDS),
    "session_init": _obj(SESSION_INIT_FIELDS),
    "parse_only": _bool_proto,
})


def _jsonable(value: Any) -> Any:
    """Parsed records: bytes shown as base64 (so records stay JSON-serialisable)."""
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# PlayReady: challenge building and verification
# ---------------------------------------------------------------------------------------------

def playready_kid_guid_le(kid: bytes | str | uuid.UUID) -> bytes:
    """The 16 bytes of a key id in PlayReady/.NET GUID order (as base64'd in WRM headers)."""
    if isinstance(kid, bytes):
        kid = uuid.UUID(bytes=kid)
    elif isinstance(kid, str):
        kid = uuid.UUID(kid)
    return kid.bytes_le


def playready_key_from_seed(key_seed: bytes, kid: uuid.UUID) -> bytes:
    """PlayReady's key-seed content key derivation (PlayReady Header Object spec section 6)."""
    if len(key_seed) < 30:
        raise ValueError("key seed must be at least 30 bytes")
    seed = key_seed[:30]
    k = kid.bytes_le
    a = hashlib.sha256(seed + k).digest()
    b = hashlib.sha256(seed + k + seed).digest()
    c = hashlib.sha256(seed + k + seed + k).digest()
    return bytes(a[i] ^ a[i + 16] ^ b[i] ^ b[i + 16] ^ c[i] ^ c[i + 16] for i in range(16))


def make_wrm_header(kids: list[str | bytes | uuid.UUID], la_url: str | None = None,
                    version: str = "4.3.0.0", algid: str = "AESCTR") -> str:
    """A PlayReady Header (WRMHEADER) XML string naming ``kids`` (v4.0 = one KID only)."""
    guids = [playready_kid_guid_le(k) for k in kids]
    la = f"<LA_URL>{html.escape(la_url)}</LA_URL>" if la_url else ""
    if version == "4.0.0.0":
        if len(guids) != 1:
            raise ValueError("a 4.0.0.0 header names exactly one KID")
        data = f"<PROTECTINFO><KEYLEN>16</KEYLEN><ALGID>{algid}</ALGID></PROTECTINFO><KID>{_b64(guids[0])}</KID>{la}"
    elif version == "4.1.0.0":
        if len(guids) != 1:
            raise ValueError("a 4.1.0.0 header names exactly one KID")
        data = f'<PROTECTINFO><KID ALGID="{algid}" VALUE="{_b64(guids[0])}"></KID></PROTECTINFO>{la}'
    else:
        kid_xml = "".join(f'<KID ALGID="{algid}" VALUE="{_b64(g)}"></KID>' for g in guids)
        data = f"<PROTECTINFO><KIDS>{kid_xml}</KIDS></PROTECTINFO>{la}"
    return f'<WRMHEADER xmlns="{PR_HEADER_NS}" version="{version}"><DATA>{data}</DATA></WRMHEADER>'


def _c14n(element: etree._Element) -> bytes:
    """Canonical bytes of an element as PlayReady signs them: the element's own serialisation
    with only the namespaces it uses (exclusive XML canonicalisation, no comments)."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=False)


def _ecc_public_bytes(pub: ec.EllipticCurvePublicKey) -> bytes:
    n = pub.public_numbers()
    return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")


def make_playready_challenge(wrm_header_xml: str, custom_data: str | None = None) -> bytes:
    """A SOAP 1.1 AcquireLicense envelope shaped like a PlayReady client's: ``<LA Id="SignedData">``
    (Version, ContentHeader with the WRM header, CLIENTINFO, optional CustomData, LicenseNonce,
    ClientTime, EncryptedData), then a Signature whose SignedInfo holds the SHA-256 digest of the
    canonical LA and whose SignatureValue is ECDSA P-256/SHA-256 (r||s) over the canonical
    SignedInfo, the signer's public key (x||y) in KeyInfo. Signed with a throwaway key; the
    encrypted client data is random bytes (a real client's needs Microsoft's keys)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cd = f"<CustomData>{html.escape(custom_data, quote=False)}</CustomData>" if custom_data is not None else ""
    la_text = (
        f'<LA xmlns="{PR_PROTOCOLS_NS}" Id="SignedData" xml:space="preserve">'
        f"<Version>4</Version>"
        f"<ContentHeader>{wrm_header_xml}</ContentHeader>"
        f"<CLIENTINFO><CLIENTVERSION>10.0.16384.10011</CLIENTVERSION></CLIENTINFO>"
        f"{cd}"
        f"<LicenseNonce>{_b64(secrets.token_bytes(16))}</LicenseNonce>"
        f"<ClientTime>{int(time.time())}</ClientTime>"
        f'<EncryptedData xmlns="{XMLENC_NS}" Type="http://www.w3.org/2001/04/xmlenc#Element">'
        f'<EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"></EncryptionMethod>'
        f'<KeyInfo xmlns="{XMLDSIG_NS}"><EncryptedKey xmlns="{XMLENC_NS}">'
        f'<EncryptionMethod Algorithm="http://schemas.microsoft.com/DRM/2007/03/protocols#ecc256"></EncryptionMethod>'
        f'<KeyInfo xmlns="{XMLDSIG_NS}"><KeyName>WMRMServer</KeyName></KeyInfo>'
        f"<CipherData><CipherValue>{_b64(secrets.token_bytes(128))}</CipherValue></CipherData>"
        f"</EncryptedKey></KeyInfo>"
        f"<CipherData><CipherValue>{_b64(secrets.token_bytes(1024))}</CipherValue></CipherData>"
        f"</EncryptedData></LA>"
    )
    # Emit the LA in canonical form, so that the bytes sent are the bytes signed (as clients do).
    la_c14n = _c14n(etree.fromstring(la_text.encode(), _safe_parser()))
    digest = hashlib.sha256(la_c14n).digest()
    signed_info_text = (
        f'<SignedInfo xmlns="{XMLDSIG_NS}">'
        f'<CanonicalizationMethod Algorithm="{PR_C14N_METHOD}"></CanonicalizationMethod>'
        f'<SignatureMethod Algorithm="{PR_SIGNATURE_METHOD}"></SignatureMethod>'
        f'<Reference URI="#SignedData"><DigestMethod Algorithm="{PR_DIGEST_METHOD}"></DigestMethod>'
        f"<DigestValue>{_b64(digest)}</DigestValue></Reference></SignedInfo>"
    )
    si_c14n = _c14n(etree.fromstring(signed_info_text.encode(), _safe_parser()))
    r, s = decode_dss_signature(key.sign(si_c14n, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:soap="{SOAP11_NS}">'
        f'<soap:Body><AcquireLicense xmlns="{PR_PROTOCOLS_NS}"><challenge>'
        f'<Challenge xmlns="{PR_MESSAGES_NS}">'
        f"{la_c14n.decode()}"
        f'<Signature xmlns="{XMLDSIG_NS}">{si_c14n.decode()}'
        f"<SignatureValue>{_b64(sig)}</SignatureValue>"
        f'<KeyInfo xmlns="{XMLDSIG_NS}"><KeyValue><ECCKeyValue>'
        f"<PublicKey>{_b64(_ecc_public_bytes(key.public_key()))}</PublicKey>"
        f"</ECCKeyValue></KeyValue></KeyInfo></Signature>"
        f"</Challenge></challenge></AcquireLicense></soap:Body></soap:Envelope>"
    )
    return envelope.encode()


class _Challenge:
    """A verified PlayReady licence challenge."""

    def __init__(self, envelope: etree._Element, la: etree._Element, header: etree._Element | None):
        self.envelope = envelope
        self.la = la
        self.header = header  # the SOAP Header element, if any
        self.la_c14n = _c14n(la)
        self.wrm_kids = _wrm_kids(la)
        self.nonce = la.findtext(f"{{{PR_PROTOCOLS_NS}}}LicenseNonce")
        self.la_custom_data = la.findtext(f"{{{PR_PROTOCOLS_NS}}}CustomData")


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _elements(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _wrm_kids(la: etree._Element) -> list[str]:
    """The key ids named by the challenge's WRM header (any header version), as UUID strings."""
    ch = la.find(_q(PR_PROTOCOLS_NS, "ContentHeader"))
    if ch is None:
        return []
    wrm = ch.find(_q(PR_HEADER_NS, "WRMHEADER"))
    if wrm is None:
        return []
    out = []
    for kid in wrm.iter(_q(PR_HEADER_NS, "KID")):
        value = kid.get("VALUE") or (kid.text or "").strip()
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 16:
            out.append(str(uuid.UUID(bytes_le=raw)))
    return out


def _parse_envelope(body: bytes) -> etree._Element:
    if not body:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "empty request body")
    if b"<!DOCTYPE" in body[:4096].upper():
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "DTD is prohibited in this XML document")
    try:
        root = etree.fromstring(body, _safe_parser())
    except etree.XMLSyntaxError as e:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, f"the request is not well-formed XML: {e}") from None
    if root.tag == _q(SOAP12_NS, "Envelope"):
        raise Refused("VersionMismatch", "SOAP 1.2 envelope sent to a SOAP 1.1 endpoint (text/xml)")
    if root.tag != _q(SOAP11_NS, "Envelope"):
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, f"root element is {root.tag}, not a SOAP 1.1 Envelope")
    return root


def _verify_challenge(root: etree._Element) -> _Challenge:
    """Check an AcquireLicense envelope as a PlayReady server can without Microsoft's keys."""
    kids = _elements(root)
    header = None
    if kids and kids[0].tag == _q(SOAP11_NS, "Header"):
        header = kids.pop(0)
    if not kids or kids[0].tag != _q(SOAP11_NS, "Body"):
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "the Envelope has no Body (or a Header after the Body)")
    body = kids[0]
    for extra in kids[1:]:
        if extra.tag in (_q(SOAP11_NS, "Header"), _q(SOAP11_NS, "Body")):
            raise Refused(DRM_E_SERVER_INVALID_MESSAGE, f"misplaced or repeated {etree.QName(extra).localname}")
    msg = _elements(body)
    if len(msg) != 1 or msg[0].tag != _q(PR_PROTOCOLS_NS, "AcquireLicense"):
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "the Body does not hold exactly one protocols:AcquireLicense")
    challenge = msg[0].find(f"{_q(PR_PROTOCOLS_NS, 'challenge')}/{_q(PR_MESSAGES_NS, 'Challenge')}")
    if challenge is None:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "AcquireLicense/challenge/Challenge missing")
    las = challenge.findall(_q(PR_PROTOCOLS_NS, "LA"))
    sigs = challenge.findall(_q(XMLDSIG_NS, "Signature"))
    if len(las) != 1 or len(sigs) != 1:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "Challenge must hold exactly one LA and one Signature")
    la, sig = las[0], sigs[0]
    if la.get("Id") != "SignedData":
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, 'LA has no Id="SignedData"')
    if la.findtext(_q(PR_PROTOCOLS_NS, "Version")) is None:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "LA/Version missing")
    if la.find(_q(PR_PROTOCOLS_NS, "ContentHeader")) is None:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "LA/ContentHeader missing")
    si = sig.find(_q(XMLDSIG_NS, "SignedInfo"))
    if si is None:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "Signature/SignedInfo missing")
    sm = si.find(_q(XMLDSIG_NS, "SignatureMethod"))
    if sm is None or sm.get("Algorithm") != PR_SIGNATURE_METHOD:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "SignatureMethod is not PlayReady ecdsa-sha256")
    ref = si.find(_q(XMLDSIG_NS, "Reference"))
    if ref is None or ref.get("URI") != "#SignedData":
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, 'SignedInfo/Reference URI is not "#SignedData"')
    dm = ref.find(_q(XMLDSIG_NS, "DigestMethod"))
    if dm is None or dm.get("Algorithm") != PR_DIGEST_METHOD:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "DigestMethod is not PlayReady sha256")
    try:
        digest_value = base64.b64decode(ref.findtext(_q(XMLDSIG_NS, "DigestValue")) or "", validate=True)
        sig_value = base64.b64decode(sig.findtext(_q(XMLDSIG_NS, "SignatureValue")) or "", validate=True)
        pub = base64.b64decode(sig.findtext(
            f"{_q(XMLDSIG_NS, 'KeyInfo')}/{_q(XMLDSIG_NS, 'KeyValue')}/{_q(XMLDSIG_NS, 'ECCKeyValue')}/"
            f"{_q(XMLDSIG_NS, 'PublicKey')}") or "", validate=True)
    except (binascii.Error, ValueError):
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "DigestValue, SignatureValue or PublicKey is not base64") from None
    la_c14n = _c14n(la)
    if not hmac.compare_digest(hashlib.sha256(la_c14n).digest(), digest_value):
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE,
                      "the digest of the signed LA element does not match SignedInfo (LA modified after signing)")
    if len(pub) != 64 or len(sig_value) != 64:
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "PublicKey must be 64 bytes (x||y), SignatureValue 64 bytes (r||s)")
    try:
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(pub[:32], "big"), int.from_bytes(pub[32:], "big"),
                                            ec.SECP256R1()).public_key()
        key.verify(encode_dss_signature(int.from_bytes(sig_value[:32], "big"), int.from_bytes(sig_value[32:], "big")),
                   _c14n(si), ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        raise Refused(DRM_E_SERVER_INVALID_MESSAGE, "the ECDSA signature over SignedInfo does not verify") from None
    return _Challenge(root, la, header)


def _la_c14n_of(challenge_xml: bytes) -> bytes:
    root = etree.fromstring(challenge_xml, _safe_parser())
    las = root.findall(f".//{_q(PR_PROTOCOLS_NS, 'LA')}")
    if len(las) != 1:
        raise ValueError("the challenge must contain exactly one protocols:LA element")
    return _c14n(las[0])


# ---------------------------------------------------------------------------------------------
# PlayReady test server: the cfg query-string syntax
# ---------------------------------------------------------------------------------------------

class _CfgParser:
    """cfg=(name:value,...),(name:value,...) where a value is an atom or a bracketed list."""

    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def fail(self, msg: str) -> Refused:
        return Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {msg} at offset {self.i} of {self.s!r}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.i += 1

    def atom(self) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in "(),:":
            self.i += 1
        if start == self.i:
            raise self.fail("expected a value")
        return self.s[start:self.i]

    def item(self) -> Any:
        """pair | bracketed | atom -> (name, value) | value"""
        if self.peek() == "(":
            return self.bracketed()
        word = self.atom()
        if self.peek() == ":":
            self.i += 1
            value = self.bracketed() if self.peek() == "(" else self.atom()
            return (word, value)
        return word

    def bracketed(self) -> Any:
        self.expect("(")
        items = [self.item()]
        while self.peek() == ",":
            self.i += 1
            items.append(self.item())
        self.expect(")")
        if all(isinstance(x, tuple) for x in items):
            d: dict[str, Any] = {}
            for k, v in items:
                if k in d:
                    raise self.fail(f"parameter {k!r} given twice")
                d[k] = v
            return d
        if any(isinstance(x, tuple) for x in items):
            raise self.fail("mixed name:value pairs and bare values")
        return items

    def groups(self) -> list[dict[str, Any]]:
        out = []
        while True:
            g = self.bracketed()
            if not isinstance(g, dict):
                raise self.fail("each license group must be (name:value,...)")
            out.append(g)
            if self.peek() == ",":
                self.i += 1
                continue
            break
        if self.i != len(self.s):
            raise self.fail("unexpected text after the last group")
        return out


_BOOL_PARAMS = {"playright", "readright", "executeright", "persist", "simple", "realtime", "isroot",
                "allowunknownsd", "allowunknownhd", "revoked", "eccpatch"}
_DATE_PARAMS = {"begindate", "enddate", "expiration", "removaldate"}
_INT_PARAMS = {"firstexp", "firstplayexpiration", "sourceid", "caopl", "ucaopl", "cvopl", "ucvopl",
               "avopl", "explicitacp"}
_COMPLEX_PARAMS = {"extendedright", "dvop", "daop", "avop", "extendedrestrictions", "playenablers",
                   "clientinfo"}
CFG_PARAMS = ({"sl", "keyseed", "kid", "contentkey", "ckt", "tid", "maxres", "rootid", "errorcode"}
              | _BOOL_PARAMS | _DATE_PARAMS | _INT_PARAMS | _COMPLEX_PARAMS)
_GUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_DATE_RE = re.compile(r"^[0-9]{8}([0-9]{6})?$")


def _cfg_b64(value: Any, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} must be base64")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} is not valid base64: {value!r}") from None
    if length is not None and len(raw) != length:
        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} must be {length} bytes, got {len(raw)}")
    return raw


def _cfg_group(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate one license group; values are normalised (bools, ints, kid as UUID string...)."""
    out: dict[str, Any] = {}
    if "enddate" in raw and "expiration" in raw:
        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: enddate and expiration are the same parameter")
    if "firstexp" in raw and "firstplayexpiration" in raw:
        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: firstexp and firstplayexpiration are the same parameter")
    for name, value in raw.items():
        if name not in CFG_PARAMS:
            raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: unknown parameter {name!r}")
        if name not in _COMPLEX_PARAMS and not isinstance(value, str):
            raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} takes a plain value")
        if name == "sl":
            if value not in ("150", "2000", "3000"):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: sl must be 150, 2000 or 3000, got {value!r}")
            out["sl"] = int(value)
        elif name == "kid":
            if value == "header":
                out["kid"] = "header"
            elif _GUID_RE.match(value):
                out["kid"] = str(uuid.UUID(value))
            else:
                out["kid"] = str(uuid.UUID(bytes_le=_cfg_b64(value, "kid", 16)))
            out["kid_as_sent"] = value
        elif name == "contentkey":
            out["contentkey"] = _cfg_b64(value, "contentkey", 16)
        elif name == "keyseed":
            seed = _cfg_b64(value, "keyseed")
            if len(seed) < 30:
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: keyseed must be at least 30 bytes")
            out["keyseed"] = seed
        elif name == "ckt":
            if value not in ("aes128bitctr", "aes128bitcbc", "keyexchange"):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: ckt must be aes128bitctr, aes128bitcbc or keyexchange")
            out["ckt"] = value
        elif name in ("tid", "rootid"):
            if not _GUID_RE.match(value):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} must be a GUID")
            out[name] = str(uuid.UUID(value))
        elif name in _BOOL_PARAMS:
            if value not in ("true", "false"):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} must be true or false, got {value!r}")
            out[name] = value == "true"
        elif name in _DATE_PARAMS:
            if not _DATE_RE.match(value):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} must be yyyymmdd[hhmmss], got {value!r}")
            try:
                time.strptime(value if len(value) == 14 else value + "000000", "%Y%m%d%H%M%S")
            except ValueError:
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} is not a valid date: {value!r}") from None
            out["enddate" if name == "expiration" else name] = value
        elif name in _INT_PARAMS:
            if not re.match(r"^[0-9]+$", value):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"cfg: {name} must be a non-negative integer, got {value!r}")
            out["firstexp" if name == "firstplayexpiration" else name] = int(value)
        elif name == "maxres":
            m = re.match(r"^([0-9]+)x([0-9]+)$", value)
            if not m:
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: maxres must be WIDTHxHEIGHT")
            out["maxres"] = [int(m.group(1)), int(m.group(2))]
        elif name == "errorcode":
            if not re.match(r"^(0x)?[0-9A-Fa-f]{8}$", value):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: errorcode must be 8 hex digits")
            out["errorcode"] = int(value, 16)
        else:
            out[name] = value
    return out


def parse_playready_cfg(cfg: str) -> list[dict[str, Any]]:
    """Parse and validate a PlayReady test-server ``cfg`` value into license groups."""
    if " " in cfg:
        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg: the query string must not include spaces")
    return [_cfg_group(g) for g in _CfgParser(cfg).groups()]


# ---------------------------------------------------------------------------------------------
# keyplex CustomData (PlayReady SDK licence server)
# ---------------------------------------------------------------------------------------------

def _cd_fail(msg: str) -> Refused:
    return Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"CustomData: {msg}")


def _cd_object(value: Any, where: str, required: set[str], optional: set[str]) -> dict:
    if not isinstance(value, dict):
        raise _cd_fail(f"{where} must be a JSON object")
    unknown = set(value) - required - optional
    if unknown:
        raise _cd_fail(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = required - set(value)
    if missing:
        raise _cd_fail(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    return value


def _cd_int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _cd_fail(f"{where} must be an integer")
    if value < minimum:
        raise _cd_fail(f"{where} must be >= {minimum}")
    return value


def _cd_str(value: Any, where: str, nonempty: bool = True) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        raise _cd_fail(f"{where} must be a non-empty string")
    return value


def parse_keyplex_customdata(text: str) -> dict[str, Any]:
    """Validate keyplex's CustomData JSON (keyplex convention, see SOURCES.md)."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise _cd_fail(f"not JSON: {e}") from None
    _cd_object(doc, "the document", {"version", "content_id", "keys", "policy"}, {"user"})
    if type(doc["version"]) is not int or doc["version"] != 1:
        raise _cd_fail("version must be 1")
    _cd_str(doc["content_id"], "content_id")
    if "user" in doc:
        _cd_str(doc["user"], "user")
    keys = doc["keys"]
    if not isinstance(keys, list) or not 1 <= len(keys) <= 64:
        raise _cd_fail("keys must be an array of 1 to 64 keys")
    seen = set()
    parsed_keys = []
    for i, k in enumerate(keys):
        where = f"keys[{i}]"
        _cd_object(k, where, {"kid", "kid_guid_le", "key"}, {"track_type"})
        kid = _cd_str(k["kid"], f"{where}.kid")
        if not _GUID_RE.match(kid):
            raise _cd_fail(f"{where}.kid must be an 8-4-4-4-12 UUID")
        u = uuid.UUID(kid)
        try:
            le = base64.b64decode(_cd_str(k["kid_guid_le"], f"{where}.kid_guid_le"), validate=True)
            key = base64.b64decode(_cd_str(k["key"], f"{where}.key"), validate=True)
        except (binascii.Error, ValueError):
            raise _cd_fail(f"{where}: kid_guid_le and key must be standard base64") from None
        if len(le) != 16 or le != u.bytes_le:
            raise _cd_fail(f"{where}.kid_guid_le does not encode kid {kid} in GUID byte order")
        if len(key) != 16:
            raise _cd_fail(f"{where}.key must be 16 bytes")
        if "track_type" in k:
            _cd_str(k["track_type"], f"{where}.track_type")
        if str(u) in seen:
            raise _cd_fail(f"{where}: key id {u} listed twice")
        seen.add(str(u))
        parsed_keys.append({"kid": str(u), "key": key, **({"track_type": k["track_type"]} if "track_type" in k else {})})
    policy = _cd_object(doc["policy"], "policy", {"persistent"},
                        {"security_level", "licence_duration_seconds", "playback_duration_seconds",
                         "renewal_interval_seconds", "hdcp"})
    if not isinstance(policy["persistent"], bool):
        raise _cd_fail("policy.persistent must be true or false")
    if "security_level" in policy:
        if isinstance(policy["security_level"], bool) or policy["security_level"] not in (150, 2000, 3000):
            raise _cd_fail("policy.security_level must be 150, 2000 or 3000")
    for name, minimum in (("licence_duration_seconds", 0), ("playback_duration_seconds", 0),
                          ("renewal_interval_seconds", 1)):
        if name in policy:
            _cd_int(policy[name], f"policy.{name}", minimum)
    if "hdcp" in policy and policy["hdcp"] not in HDCP_NAMES:
        raise _cd_fail(f"policy.hdcp must be one of {', '.join(HDCP_NAMES)}")
    return {**doc, "keys": parsed_keys}


# ---------------------------------------------------------------------------------------------
# FairPlay
# ---------------------------------------------------------------------------------------------

_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")


def _fps_fields(spc: bytes, asset_id: Any, key: Any, iv: Any, optional: dict[str, Any]) -> dict[str, Any]:
    if not spc:
        raise Refused(400, "spc is empty")
    if not isinstance(asset_id, str) or not asset_id:
        raise Refused(400, "assetId must be a non-empty string")
    for name, value in (("key", key), ("iv", iv)):
        if not isinstance(value, str) or not _HEX32.match(value):
            raise Refused(400, f"{name} must be 32 hex digits")
    out = {"spc": spc, "assetId": asset_id, "key": bytes.fromhex(key), "iv": bytes.fromhex(iv)}
    for name in ("leaseDurationSeconds", "rentalDurationSeconds"):
        if name in optional:
            v = optional[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise Refused(400, f"{name} must be an integer >= 0")
            out[name] = v
    if "persistent" in optional:
        if not isinstance(optional["persistent"], bool):
            raise Refused(400, "persistent must be true or false")
        out["persistent"] = optional["persistent"]
    if "hdcpType" in optional:
        v = optional["hdcpType"]
        if isinstance(v, bool) or v not in (-1, 0, 1):
            raise Refused(400, "hdcpType must be -1 (no HDCP), 0 (type 0) or 1 (type 1)")
        out["hdcpType"] = v
    return out


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

class _Answer:
    def __init__(self, status: int, content_type: str, body: bytes):
        self.status, self.content_type, self.body = status, content_type, body


def _json_answer(status: int, doc: dict) -> _Answer:
    return _Answer(status, "application/json", json.dumps(doc).encode())


def _soap_fault(code: Any, message: str, actor: str) -> _Answer:
    if code == "VersionMismatch":
        faultcode, detail = "soap:VersionMismatch", "<detail />"
    elif code == "Client":
        faultcode, detail = "soap:Client", "<detail />"
    else:
        faultcode = "soap:Server"
        detail = f"<detail><Exception><StatusCode>0x{int(code):08x}</StatusCode></Exception></detail>"
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f"<soap:Body><soap:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>System.Web.Services.Protocols.SoapException: {html.escape(message, quote=False)}</faultstring>"
        f"<faultactor>{html.escape(actor, quote=False)}</faultactor>{detail}"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )
    return _Answer(500, "text/xml; charset=utf-8", xml.encode())


def _playready_response(challenge: _Challenge, licence: bytes, rmsdk: str = "4.3.5000.0") -> _Answer:
    nonce = f"<LicenseNonce>{html.escape(challenge.nonce)}</LicenseNonce>" if challenge.nonce else ""
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<soap:Body><AcquireLicenseResponse xmlns="{PR_PROTOCOLS_NS}"><AcquireLicenseResult>'
        f'<Response xmlns="{PR_MESSAGES_NS}" rmsdkVersion="{rmsdk}">'
        f'<LicenseResponse xmlns="{PR_PROTOCOLS_NS}"><Version>1</Version>'
        f"<Licenses><License>{_b64(licence)}</License></Licenses>"
        f"{nonce}<ResponseID>{_b64(secrets.token_bytes(16))}</ResponseID>"
        "</LicenseResponse></Response></AcquireLicenseResult></AcquireLicenseResponse>"
        "</soap:Body></soap:Envelope>"
    )
    return _Answer(200, "text/xml; charset=utf-8", xml.encode())


class FakeLicenceServices:
    """One ThreadingHTTPServer on 127.0.0.1 serving all the fakes (see module docstring)."""

    def __init__(self, widevine_providers: dict[str, tuple[bytes, bytes]] | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, strict_widevine_challenge: bool = False):
        self.widevine_providers = dict(widevine_providers or {})
        for name, (key, iv) in self.widevine_providers.items():
            if len(key) != 32 or len(iv) != 16:
                raise ValueError(f"widevine provider {name}: signing key must be 32 bytes and iv 16 bytes")
        self.strict_widevine_challenge = strict_widevine_challenge
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._failures: dict[str, list[int | None]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeLicenceServices":
        fakes = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the client went away; nothing to answer

            def do_POST(self) -> None:
                fakes._handle(self)

            def do_GET(self) -> None:
                self._not_allowed()

            do_PUT = do_DELETE = do_PATCH = do_GET

            def _not_allowed(self) -> None:
                body = b"Method Not Allowed"
                self.send_response(405)
                self.send_header("Allow", "POST")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="licence-fakes", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeLicenceServices":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_for(self, route: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["route"] == route]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    def fail_next(self, route: str, count: int = 1, http_status: int | None = None) -> None:
        """Make the next ``count`` requests to ``route`` fail before any check: with
        ``http_status`` (e.g. 503, empty body) or, by default, in the service's own form of an
        internal error (Widevine HTTP 200 INTERNAL_ERROR, PlayReady fault 0x8004C600,
        FairPlay HTTP 500). Routes: widevine, playready, playready-sdk, fairplay-json,
        fairplay-binary."""
        if route not in ("widevine", "playready", "playready-sdk", "fairplay-json", "fairplay-binary"):
            raise ValueError(f"unknown route {route!r}")
        with self._lock:
            self._failures.setdefault(route, []).extend([http_status] * count)

    def _injected(self, route: str, h: BaseHTTPRequestHandler) -> _Answer | None:
        with self._lock:
            queue = self._failures.get(route)
            if not queue:
                return None
            http_status = queue.pop(0)
        if http_status is not None:
            return _Answer(http_status, "text/plain", b"")
        if route == "widevine":
            return _json_answer(200, {"status": "INTERNAL_ERROR", "status_message": "injected internal error"})
        if route.startswith("playready"):
            return _soap_fault(DRM_E_SERVER_INTERNAL_ERROR, "injected internal error", f"http://127.0.0.1{h.path}")
        return _Answer(500, "application/json" if route == "fairplay-json" else "text/plain",
                       b'{"error": "injected internal error"}' if route == "fairplay-json" else b"injected internal error")

    # -- deterministic licences -----------------------------------------------------------
    @staticmethod
    def widevine_licence(challenge: bytes, keys: list[tuple[bytes, bytes]]) -> bytes:
        """b"FAKE-WV-LICENCE\\0" + SHA-256(frame(challenge, kid||key for keys sorted by kid))."""
        parts = [kid + key for kid, key in _check_keys(keys)]
        return WV_LICENCE_PREFIX + hashlib.sha256(_frame(bytes(challenge), *parts)).digest()

    @staticmethod
    def playready_licence(challenge_xml: bytes, keys: list[tuple[bytes, bytes]]) -> bytes:
        """b"FAKE-PR-LICENCE\\0" + SHA-256(frame(canonical LA of the challenge, kid||key sorted)).
        kids are in UUID (big-endian, 8-4-4-4-12) byte order. The LA is what the client signed,
        so the value is the same for the player's envelope and for one a proxy added headers to."""
        parts = [kid + key for kid, key in _check_keys(keys)]
        return PR_LICENCE_PREFIX + hashlib.sha256(_frame(_la_c14n_of(bytes(challenge_xml)), *parts)).digest()

    @staticmethod
    def fairplay_ckc(spc: bytes, key16: bytes, iv16: bytes, asset_id: str) -> bytes:
        """b"FAKE-FPS-CKC\\0" + SHA-256(frame(spc, key, iv, asset id UTF-8))."""
        if len(key16) != 16 or len(iv16) != 16:
            raise ValueError("key and iv must be 16 bytes")
        return FPS_CKC_PREFIX + hashlib.sha256(_frame(bytes(spc), key16, iv16, asset_id.encode())).digest()

    # -- dispatch -----------------------------------------------------------------------------
    def _record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(rec)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")
        length = h.headers.get("Content-Length")
        rec: dict[str, Any] = {"route": None, "path": path, "query": query,
                               "headers": {k: v for k, v in h.headers.items()},
                               "accepted": False, "reason": None, "parsed": None}
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked(h)
        else:
            try:
                n = int(length or "0")
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY_BYTES:
                self._send(h, _Answer(413, "text/plain", b"request body too large or bad Content-Length"), rec,
                           route="unknown", reason="bad Content-Length")
                return
            body = h.rfile.read(n)
        rec["body"] = body
        m = re.match(r"^/widevine/cenc/getlicense/([^/]+)$", path)
        if m:
            answer = self._route("widevine", h, rec, lambda: self._widevine(unquote(m.group(1)), body, rec))
        elif path == "/playready/rightsmanager.asmx":
            answer = self._route("playready", h, rec, lambda: self._playready_test(h, query, body, rec))
        elif path == "/playready-sdk/rightsmanager.asmx":
            answer = self._route("playready-sdk", h, rec, lambda: self._playready_sdk(h, body, rec))
        elif path == "/fairplay/json":
            answer = self._route("fairplay-json", h, rec, lambda: self._fairplay_json(h, body, rec))
        elif path == "/fairplay/binary":
            answer = self._route("fairplay-binary", h, rec, lambda: self._fairplay_binary(h, body, rec))
        else:
            rec["route"] = "unknown"
            rec["reason"] = "no such route"
            answer = _Answer(404, "text/plain", b"Not Found")
        self._send(h, answer, rec)

    def _route(self, route: str, h: BaseHTTPRequestHandler, rec: dict[str, Any],
               serve: Callable[[], _Answer]) -> _Answer:
        rec["route"] = route
        injected = self._injected(route, h)
        if injected is not None:
            rec["reason"] = "injected failure"
            return injected
        return serve()

    @staticmethod
    def _read_chunked(h: BaseHTTPRequestHandler) -> bytes:
        out = b""
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                h.rfile.readline()
                return out
            out += h.rfile.read(size)
            h.rfile.readline()
            if len(out) > MAX_BODY_BYTES:
                raise ValueError("body too large")

    def _send(self, h: BaseHTTPRequestHandler, answer: _Answer, rec: dict[str, Any], route: str | None = None,
              reason: str | None = None) -> None:
        if route:
            rec["route"] = route
        if reason:
            rec["reason"] = reason
        rec["http_status"] = answer.status
        rec["response"] = answer.body
        rec["response_content_type"] = answer.content_type
        self._record(rec)
        h.send_response(answer.status)
        h.send_header("Content-Type", answer.content_type)
        h.send_header("Content-Length", str(len(answer.body)))
        h.send_header("Cache-Control", "private")
        h.end_headers()
        h.wfile.write(answer.body)

    # -- Widevine -------------------------------------------------------------------------
    def _widevine(self, url_provider: str, body: bytes, rec: dict[str, Any]) -> _Answer:
        try:
            inner, parsed = self._widevine_check(url_provider, body, rec)
            answer = self._widevine_answer(inner, parsed)
            rec["accepted"] = True
            return answer
        except Refused as r:
            rec["reason"] = f"{r.code}: {r.message}"
            return _json_answer(200, {"status": r.code, "status_message": r.message})

    def _widevine_check(self, url_provider: str, body: bytes, rec: dict[str, Any]) -> tuple[dict, dict]:
        try:
            outer = json.loads(body)
        except ValueError:
            raise Refused("MALFORMED_REQUEST", "the request body is not JSON") from None
        if not isinstance(outer, dict):
            raise Refused("MALFORMED_REQUEST", "the request body must be a JSON object")
        rec["parsed"] = {"signer": outer.get("signer")}
        unknown = set(outer) - {"request", "signature", "signer"}
        if "request" not in outer:
            raise Refused("MALFORMED_REQUEST",
                          "not a signed request: expected {\"request\": base64, \"signature\": base64, \"signer\": name}"
                          + (f" (unexpected fields {', '.join(sorted(unknown))})" if unknown else ""))
        if unknown:
            raise Refused("MALFORMED_REQUEST", f"unknown field(s) {', '.join(sorted(unknown))}")
        signer = outer.get("signer")
        if not isinstance(signer, str) or not signer:
            raise Refused("PROVIDER_MISSING", "signer missing")
        if signer not in self.widevine_providers:
            raise Refused("ACCESS_DENIED", f"unknown signer {signer!r}")
        if signer != url_provider:
            raise Refused("ACCESS_DENIED", f"signer {signer!r} may not use the URL of provider {url_provider!r}")
        if not isinstance(outer["request"], str):
            raise Refused("MALFORMED_REQUEST", "request must be a base64 string")
        try:
            inner_bytes = base64.b64decode(outer["request"], validate=True)
        except (binascii.Error, ValueError):
            raise Refused("MALFORMED_REQUEST", "request is not valid base64") from None
        sig_b64 = outer.get("signature")
        if not isinstance(sig_b64, str) or not sig_b64:
            raise Refused("SIGNATURE_FAILED", "the request is not signed")
        try:
            sig = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError):
            raise Refused("SIGNATURE_FAILED", "signature is not valid base64") from None
        key, iv = self.widevine_providers[signer]
        if not hmac.compare_digest(sig, widevine_signature(inner_bytes, key, iv)):
            raise Refused("SIGNATURE_FAILED", "signature verification failed")
        try:
            inner_json = json.loads(inner_bytes.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise Refused("MALFORMED_REQUEST", "the signed request is not UTF-8 JSON") from None
        rec["parsed"] = {"signer": signer, "request": inner_json}
        inner = _WIDEVINE_REQUEST(inner_json, "")
        rec["parsed"]["fields"] = _jsonable(inner)
        return inner_json, inner

    def _widevine_answer(self, inner_json: dict, req: dict) -> _Answer:
        provider = req.get("provider")
        if not provider:
            raise Refused("PROVIDER_MISSING", "provider missing from the request")
        if provider not in self.widevine_providers:
            raise Refused("PROVIDER_MISSING", f"unknown provider {provider!r}")
        payload = req.get("payload", b"")
        if not payload:
            raise Refused("INVALID_LICENSE_CHALLENGE", "payload (the licence challenge) is missing or empty")
        if payload == WIDEVINE_SERVICE_CERTIFICATE_REQUEST:
            return _json_answer(200, {"status": "OK", "status_message": "",
                                      "license": _b64(WIDEVINE_SERVICE_CERTIFICATE),
                                      "message_type": "SERVICE_CERTIFICATE", "supported_tracks": [],
                                      "internal_status": 0})
        if self.strict_widevine_challenge:
            self._check_widevine_challenge(payload)
        specs = req.get("content_key_specs")
        if specs is not None and "allowed_track_types" in req:
            raise Refused("INVALID_REQUEST", "only one of allowed_track_types and content_key_specs can be specified")
        if not specs:
            raise Refused("INVALID_CONTENT_INFO",
                          "no content keys: content_key_specs must carry key_id and key (this fake has no key store)")
        keys: list[tuple[bytes, bytes]] = []
        tracks = []
        for i, spec in enumerate(specs):
            where = f"content_key_specs[{i}]"
            kid, key = spec.get("key_id"), spec.get("key")
            if key is None:
                raise Refused("INVALID_CONTENT_INFO", f"{where}: no key (this fake has no key store to look {where}.key_id up in)")
            if kid is None:
                raise Refused("INVALID_REQUEST", f"{where}: key given without key_id")
            if len(kid) != 16:
                raise Refused("INVALID_REQUEST", f"{where}.key_id must be 16 bytes, got {len(kid)}")
            if len(key) != 16:
                raise Refused("INVALID_REQUEST", f"{where}.key must be 16 bytes, got {len(key)}")
            if "iv" in spec and len(spec["iv"]) not in (8, 16):
                raise Refused("INVALID_REQUEST", f"{where}.iv must be 8 or 16 bytes, got {len(spec['iv'])}")
            if "security_level" in spec and not 1 <= spec["security_level"] <= 5:
                raise Refused("INVALID_REQUEST", f"{where}.security_level must be 1 to 5")
            if any(k == kid for k, _ in keys):
                raise Refused("INVALID_REQUEST", f"{where}: key_id listed twice")
            keys.append((kid, key))
            tracks.append({"type": spec.get("track_type", ""), "key_id": _b64(kid)})
        policy = req.get("policy_overrides", {})
        for name, value in policy.items():
            if name.endswith("_seconds") and value < 0:
                raise Refused("INVALID_REQUEST", f"policy_overrides.{name} must be >= 0")
        if req.get("parse_only"):
            return _json_answer(200, {"status": "OK", "status_message": "", "message_type": "LICENSE_REQUEST",
                                      "supported_tracks": tracks, "internal_status": 0})
        licence = self.widevine_licence(payload, keys)
        return _json_answer(200, {
            "status": "OK", "status_message": "", "license": _b64(licence),
            "license_metadata": {"content_id": _b64(req.get("content_id", b"")),
                                 "license_type": "OFFLINE" if policy.get("can_persist") else "STREAMING",
                                 "request_type": "NEW"},
            "supported_tracks": tracks, "message_type": "LICENSE", "internal_status": 0,
        })

    @staticmethod
    def _check_widevine_challenge(payload: bytes) -> None:
        from google.protobuf.message import DecodeError
        from pywidevine.license_protocol_pb2 import SignedMessage

        msg = SignedMessage()
        try:
            msg.ParseFromString(payload)
        except DecodeError:
            raise Refused("INVALID_LICENSE_CHALLENGE", "payload is not a Widevine SignedMessage") from None
        if msg.type != SignedMessage.MessageType.LICENSE_REQUEST or not msg.msg or not msg.signature:
            raise Refused("INVALID_LICENSE_CHALLENGE", "payload is not a signed LICENSE_REQUEST")

    # -- PlayReady ------------------------------------------------------------------------
    def _soap_preamble(self, h: BaseHTTPRequestHandler, body: bytes, rec: dict[str, Any]) -> _Challenge:
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "text/xml":
            raise Refused(415, f"SOAP 1.1 requests must be text/xml, got {ctype or 'no Content-Type'}")
        action = h.headers.get("SOAPAction")
        if action is None or action.strip().strip('"') != PR_SOAP_ACTION:
            raise Refused("Client", f"Server did not recognize the value of HTTP Header SOAPAction: "
                                    f"{(action or '').strip()}.")
        root = _parse_envelope(body)
        ch = _verify_challenge(root)
        rec["parsed"] = {"wrm_kids": ch.wrm_kids, "la_custom_data": ch.la_custom_data}
        return ch

    def _soap_refusal(self, r: Refused, h: BaseHTTPRequestHandler, rec: dict[str, Any]) -> _Answer:
        rec["reason"] = f"{r.code if isinstance(r.code, str) else hex(r.code)}: {r.message}"
        if r.code == 415:
            return _Answer(415, "text/plain", r.message.encode())
        return _soap_fault(r.code, r.message, f"http://127.0.0.1{h.path}")

    def _playready_test(self, h: BaseHTTPRequestHandler, query: str, body: bytes, rec: dict[str, Any]) -> _Answer:
        try:
            cfg_raw = None
            for part in query.split("&") if query else []:
                name, _, value = part.partition("=")
                if name == "cfg":
                    if cfg_raw is not None:
                        raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "cfg given twice")
                    cfg_raw = unquote(value)  # '+' stays '+': base64 arguments keep it
            groups = parse_playready_cfg(cfg_raw) if cfg_raw else []
            rec["parsed"] = {"cfg": cfg_raw, "groups": _jsonable(groups)}
            for g in groups:
                if "errorcode" in g:
                    raise Refused(g["errorcode"], "exception requested with cfg errorcode")
            ch = self._soap_preamble(h, body, rec)
            rec["parsed"].update({"cfg": cfg_raw, "groups": _jsonable(groups)})
            keys = self._resolve_cfg_keys(groups, ch)
            rec["parsed"]["keys"] = [{"kid": str(uuid.UUID(bytes=k)), "key": _b64(v), "source": src}
                                     for k, v, src in keys]
            licence = self.playready_licence(body, [(k, v) for k, v, _ in keys])
            rec["accepted"] = True
            return _playready_response(ch, licence)
        except Refused as r:
            return self._soap_refusal(r, h, rec)

    @staticmethod
    def _resolve_cfg_keys(groups: list[dict[str, Any]], ch: _Challenge) -> list[tuple[bytes, bytes, str]]:
        if not groups:
            groups = [{}]
        header_kids = ch.wrm_kids
        if len(groups) > 1 and any(g.get("kid", "header") == "header" for g in groups):
            raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC,
                          "with several license groups each group needs its own kid (a GUID or base64 KID)")
        out: list[tuple[bytes, bytes, str]] = []
        for i, g in enumerate(groups):
            kid = g.get("kid", "header")
            if kid == "header":
                if len(header_kids) != 1:
                    raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC,
                                  f"license {i}: kid:header (or no kid) needs a WRMHEADER naming exactly one KID, "
                                  f"it names {len(header_kids)}")
                kid = header_kids[0]
            elif kid not in header_kids:
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"license {i}: kid {kid} is not in the WRMHEADER")
            u = uuid.UUID(kid)
            if any(k == u.bytes for k, _, _ in out):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, f"license {i}: kid {kid} requested twice")
            if "contentkey" in g:
                out.append((u.bytes, g["contentkey"], "contentkey"))
            else:
                seed = g.get("keyseed", PLAYREADY_TEST_KEY_SEED)
                out.append((u.bytes, playready_key_from_seed(seed, u), "keyseed"))
        return out

    def _playready_sdk(self, h: BaseHTTPRequestHandler, body: bytes, rec: dict[str, Any]) -> _Answer:
        try:
            ch = self._soap_preamble(h, body, rec)
            blocks = [] if ch.header is None else [
                e for e in _elements(ch.header) if e.tag == _q(KEYPLEX_CUSTOMDATA_NS, "CustomData")]
            if not blocks:
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC,
                              f"no <CustomData xmlns=\"{KEYPLEX_CUSTOMDATA_NS}\"> block in the SOAP Header")
            if len(blocks) > 1:
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "more than one keyplex CustomData header block")
            if _elements(blocks[0]):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC, "the CustomData header block must hold text only")
            text = blocks[0].text or ""
            rec["parsed"]["customdata_text"] = text
            cd = parse_keyplex_customdata(text)
            rec["parsed"]["customdata"] = _jsonable(cd)
            cd_kids = [k["kid"] for k in cd["keys"]]
            if ch.wrm_kids and not set(cd_kids) & set(ch.wrm_kids):
                raise Refused(DRM_E_SERVER_SERVICE_SPECIFIC,
                              "none of the CustomData keys is a KID of the challenge's WRMHEADER")
            keys = [(uuid.UUID(k["kid"]).bytes, k["key"]) for k in cd["keys"]]
            licence = self.playready_licence(body, keys)
            rec["accepted"] = True
            return _playready_response(ch, licence)
        except Refused as r:
            return self._soap_refusal(r, h, rec)

    # -- FairPlay -------------------------------------------------------------------------
    def _fairplay_json(self, h: BaseHTTPRequestHandler, body: bytes, rec: dict[str, Any]) -> _Answer:
        try:
            ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise Refused(400, f"Content-Type must be application/json, got {ctype or 'none'}")
            try:
                doc = json.loads(body)
            except ValueError:
                raise Refused(400, "the body is not JSON") from None
            if not isinstance(doc, dict):
                raise Refused(400, "the body must be a JSON object")
            rec["parsed"] = {"request": doc}
            allowed = {"spc", "assetId", "key", "iv", "leaseDurationSeconds", "rentalDurationSeconds",
                       "persistent", "hdcpType"}
            unknown = set(doc) - allowed
            if unknown:
                raise Refused(400, f"unknown field(s): {', '.join(sorted(unknown))}")
            missing = {"spc", "assetId", "key", "iv"} - set(doc)
            if missing:
                raise Refused(400, f"missing field(s): {', '.join(sorted(missing))}")
            if not isinstance(doc["spc"], str):
                raise Refused(400, "spc must be a base64 string")
            try:
                spc = base64.b64decode(doc["spc"], validate=True)
            except (binascii.Error, ValueError):
                raise Refused(400, "spc is not valid base64") from None
            fields = _fps_fields(spc, doc["assetId"], doc["key"], doc["iv"], doc)
            rec["parsed"] = {"request": doc, "fields": _jsonable(fields)}
            ckc = self.fairplay_ckc(spc, fields["key"], fields["iv"], fields["assetId"])
            rec["accepted"] = True
            return _json_answer(200, {"ckc": _b64(ckc)})
        except Refused as r:
            rec["reason"] = r.message
            return _json_answer(400, {"error": r.message})

    def _fairplay_binary(self, h: BaseHTTPRequestHandler, body: bytes, rec: dict[str, Any]) -> _Answer:
        try:
            ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/octet-stream":
                raise Refused(400, f"Content-Type must be application/octet-stream, got {ctype or 'none'}")
            hdr = h.headers
            optional: dict[str, Any] = {}
            for header, name in (("X-Lease-Duration-Seconds", "leaseDurationSeconds"),
                                 ("X-Rental-Duration-Seconds", "rentalDurationSeconds")):
                v = hdr.get(header)
                if v is not None:
                    if not re.match(r"^[0-9]+$", v.strip()):
                        raise Refused(400, f"{header} must be a non-negative integer")
                    optional[name] = int(v)
            v = hdr.get("X-Persistent")
            if v is not None:
                if v.strip() not in ("true", "false"):
                    raise Refused(400, "X-Persistent must be true or false")
                optional["persistent"] = v.strip() == "true"
            v = hdr.get("X-HDCP-Type")
            if v is not None:
                if v.strip() not in ("-1", "0", "1"):
                    raise Refused(400, "X-HDCP-Type must be -1, 0 or 1")
                optional["hdcpType"] = int(v)
            for header in ("X-Asset-Id", "X-Content-Key", "X-Content-IV"):
                if hdr.get(header) is None:
                    raise Refused(400, f"missing header {header}")
            rec["parsed"] = {"headers": {k: hdr.get(k) for k in (
                "X-Asset-Id", "X-Content-Key", "X-Content-IV", "X-Lease-Duration-Seconds",
                "X-Rental-Duration-Seconds", "X-Persistent", "X-HDCP-Type") if hdr.get(k) is not None}}
            fields = _fps_fields(body, hdr["X-Asset-Id"], hdr["X-Content-Key"].strip(),
                                 hdr["X-Content-IV"].strip(), optional)
            rec["parsed"]["fields"] = _jsonable(fields)
            ckc = self.fairplay_ckc(body, fields["key"], fields["iv"], fields["assetId"])
            rec["accepted"] = True
            return _Answer(200, "application/octet-stream", ckc)
        except Refused as r:
            rec["reason"] = r.message
            return _Answer(400, "text/plain; charset=utf-8", r.message.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description="Run keyplex's fake DRM licence services on loopback.")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    fakes = FakeLicenceServices({SHAKA_TEST_PROVIDER: (SHAKA_TEST_SIGNING_KEY, SHAKA_TEST_SIGNING_IV)},
                                host=args.host, port=args.port).start()
    print(f"licence fakes on http://{args.host}:{fakes.port}", flush=True)
    for route in ("/widevine/cenc/getlicense/widevine_test", "/playready/rightsmanager.asmx?cfg=(kid:header)",
                  "/playready-sdk/rightsmanager.asmx", "/fairplay/json", "/fairplay/binary"):
        print(f"  POST {route}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fakes.stop()


if __name__ == "__main__":
    main()
