"""The answers of the vendor dialects, checked by parsers nobody on the project wrote: every
CPIX document keyplex answers on the PallyCon, ATEME and SPEKE routes validates against the
official CPIX 2.3 XSD (lxml), its Widevine and PlayReady boxes parse with pywidevine and
pyplayready, and the requests are the vendors' own samples (PallyCon's guide, AWS's SPEKE v2
verification suite), unchanged but for the content id."""

import base64
import re
import urllib.error
import urllib.request
import uuid

import pytest
from lxml import etree
from pyplayready import PSSH as PlayReadyPSSH
from pywidevine import PSSH as WidevinePSSH

import keyplex_proc
from conftest import ROOT, VECTORS
from test_crosscheck import FP, NS, PR, WV, schema

SAMPLES = ROOT / "crates" / "keyplex-server" / "tests" / "it" / "fixtures" / "pallycon"
TOKEN = "pallycon-enc-token-of-the-python-suite"
CONFIG = f"""
[tenants.pally]
enc_token = "{TOKEN}"
fairplay_uri_template = "skd://{{kid_base64}}"
widevine_provider = "pally"
"""


@pytest.fixture(scope="module")
def pally(keyplex_bin, tmp_path_factory):
    with keyplex_proc.running_keyplex(keyplex_bin, CONFIG, tmp_path_factory.mktemp("pally")) as srv:
        yield srv


def call(server, path, body=None, headers=None):
    req = urllib.request.Request(server["base"] + path, data=body.encode() if body else None,
                                 method="POST" if body else "GET")
    req.add_header("Content-Type", "application/xml")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def valid(payload: bytes) -> etree._Element:
    root = etree.fromstring(payload)
    s = schema("2.3")
    assert s.validate(root), f"does not validate against CPIX 2.3: {s.error_log}\n{payload.decode()}"
    for value in root.iterfind("cpix:ContentKeyList/cpix:ContentKey/cpix:Data/pskc:Secret/pskc:PlainValue", NS):
        keyplex_proc.saw_key(base64.b64decode(value.text))
    return root


def sample(name: str, content_id: str) -> str:
    xml = (SAMPLES / f"{name}.xml").read_text()
    head, rest = xml.split('<cpix:CPIX id="', 1)
    return head + f'<cpix:CPIX id="{content_id}"' + rest.split('"', 1)[1]


def only_kid(root) -> str:
    kids = [k.get("kid") for k in root.iterfind("cpix:ContentKeyList/cpix:ContentKey", NS)]
    assert len(kids) == 1
    return kids[0]


@pytest.mark.parametrize("name", ["dash-vod", "hls-vod", "dash-live", "hls-live"])
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_pallycon_guide_samples_validate_and_parse(pally, name, api):
    status, payload = call(pally, f"/pally/{api}/cpix/pallycon/getKey/{TOKEN}", sample(name, f"py-{name}"))
    assert status == 200, payload
    root = valid(payload)
    assert root.get("id") == f"py-{name}"
    kid = only_kid(root)
    assert kid not in (SAMPLES / f"{name}.xml").read_text(), "keyplex chooses the kid"
    for drm in root.iterfind("cpix:DRMSystemList/cpix:DRMSystem", NS):
        assert drm.get("kid") == kid
        system = drm.get("systemId").lower()
        pssh = drm.find("cpix:PSSH", NS)
        if system == WV:
            parsed = WidevinePSSH(pssh.text, strict=True)
            assert [str(k) for k in parsed.key_ids] == [kid]
        elif system == PR:
            header = PlayReadyPSSH(pssh.text).wrm_headers[0]
            assert [str(k.value) for k in header.key_ids] == [kid]
        elif system == FP:
            assert pssh is None
            uri = base64.b64decode(drm.find("cpix:URIExtXKey", NS).text).decode()
            assert uri == "skd://" + base64.b64encode(uuid.UUID(kid).bytes).decode()
        cpd = drm.find("cpix:ContentProtectionData", NS)
        if api == "v1":
            assert cpd is None and drm.find("cpix:HLSSignalingData", NS) is None
        elif pssh is not None:
            # V2: the pssh box's data without its 32-byte header (v0 boxes).
            assert base64.b64decode(cpd.text) == base64.b64decode(pssh.text)[32:]


def test_ateme_get_form_validates(pally):
    for fmt, systems in (("dash", {PR, WV}), ("hls", {FP, WV})):
        status, payload = call(pally, f"/pally/cpix/anevia/{fmt}/{TOKEN}/py-ateme")
        assert status == 200, payload
        root = valid(payload)
        found = {d.get("systemId") for d in root.iterfind("cpix:DRMSystemList/cpix:DRMSystem", NS)}
        assert found == systems


def test_speke_v2_answers_with_empty_elements_validate(server):
    """AWS's FairPlay request asks for PSSH (MediaPackage sends it): the answer keeps it empty,
    and still validates."""
    body = (VECTORS / "speke" / "speke-reference-server" / "v2_request_cenc_widevine_playready_fairplay.xml")
    body = body.read_text().replace('commonEncryptionScheme="cenc"', 'commonEncryptionScheme="cbcs"')
    # Kids and content of its own: the session's server is shared with the other suites.
    for kid in set(re.findall(r'kid="([0-9a-f-]{36})"', body)):
        body = body.replace(kid, str(uuid.uuid4()))
    body = body.replace('contentId="cenc_test_001"', 'contentId="py-speke-fairplay-pssh"')
    # As MediaPackage sends it (awslabs/speke-reference-server PR #68): FairPlay asks PSSH too.
    body = re.sub(f'(<cpix:DRMSystem [^>]*systemId="{FP}">)', r"\1<cpix:PSSH />", body)
    assert body.count("<cpix:PSSH />") == 6
    status, payload = call(server, "/acme/cpix", body, {
        "X-Speke-Version": "2.0",
        "Authorization": "Basic " + base64.b64encode(b"packager:s3cret-acme").decode(),
    })
    assert status == 200, payload
    root = valid(payload)
    fairplay = root.find(f'cpix:DRMSystemList/cpix:DRMSystem[@systemId="{FP}"]', NS)
    pssh = fairplay.find("cpix:PSSH", NS)
    assert pssh is not None and not (pssh.text or "").strip()
