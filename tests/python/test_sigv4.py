"""AWS SigV4 on the SPEKE route, signed by botocore (the AWS SDK's own signer), against the
running keyplex: an independent check of keyplex's verifier (src/sigv4.rs)."""

import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from lxml import etree

from conftest import VECTORS

REQUEST = (
    VECTORS
    / "speke"
    / "speke-reference-server"
    / "v2_general_1_generic_spekev2_dash_widevine_preset_video_1_audio_1_no_rotation.xml"
).read_bytes()
ACME = Credentials("AKIDACMEPY", "acme-sigv4-secret-for-botocore")
NS = {"cpix": "urn:dashif:org:cpix", "pskc": "urn:ietf:params:xml:ns:keyprov:pskc"}


def signed(url: str, body: bytes, credentials=ACME, region="us-east-1", token=None) -> AWSRequest:
    headers = {"Content-Type": "application/xml", "X-Speke-Version": "2.0"}
    if token:
        credentials = Credentials(credentials.access_key, credentials.secret_key, token)
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return request


def send(request: AWSRequest, body=None, url=None):
    req = urllib.request.Request(
        url or request.url,
        data=request.body if body is None else body,
        headers=dict(request.headers.items()),
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def keys(body: bytes) -> list:
    doc = etree.fromstring(body)
    return [v.text for v in doc.iterfind(".//pskc:PlainValue", NS)]


def test_botocore_signed_speke_v2_request_is_accepted(server):
    url = server["base"] + "/acme/speke/v2"
    status, headers, body = send(signed(url, REQUEST))
    assert status == 200, body
    assert headers["X-Speke-Version"] == "2.0"
    assert headers["X-Speke-User-Agent"].startswith("keyplex/")
    first = keys(body)
    assert len(first) == 2
    # A second, freshly signed identical request gets the same keys.
    status, _, body = send(signed(url, REQUEST))
    assert status == 200 and keys(body) == first
    # Also on the CPIX route.
    status, _, body = send(signed(server["base"] + "/acme/cpix", REQUEST))
    assert status == 200 and keys(body) == first


def test_botocore_signature_replayed_with_another_body_or_path_fails(server):
    url = server["base"] + "/acme/speke/v2"
    request = signed(url, REQUEST)
    other = REQUEST.replace(b"test_case_generic", b"test_case_replayed")
    status, _, body = send(request, body=other)
    assert status == 401, body
    assert b"signature does not match" in body
    status, _, body = send(request, url=server["base"] + "/acme/nks/v1/cpix")
    assert status == 401, body


def test_wrong_secret_region_and_role_credentials_are_401(server):
    url = server["base"] + "/acme/speke/v2"
    status, _, _ = send(signed(url, REQUEST, credentials=Credentials("AKIDACMEPY", "wrong")))
    assert status == 401
    status, _, body = send(signed(url, REQUEST, region="eu-west-1"))
    assert status == 401 and b"us-east-1/execute-api" in body
    status, _, body = send(signed(url, REQUEST, token="FwoGZXIvYXdzEBYaDH"))
    assert status == 401 and b"API Gateway" in body
