"""`GET /openapi.json` checked by code keyplex did not write.

`openapi-spec-validator` validates the document against the OpenAPI 3.1 meta-schema (and its
references); then real answers of the running binary — packager JSON, admin API, errors — are
validated against the schema the document gives for that path, method, status and media type,
with `openapi-schema-validator`'s OAS 3.1 dialect. A document that drifts from what the server
sends fails here.
"""

import base64
import json
import urllib.error
import urllib.request
import uuid

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate


def call(base, method, path, *, body=None, headers=None):
    """(status, media type, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, ctype, raw = r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        status, ctype, raw = e.code, e.headers.get("Content-Type", ""), e.read()
    media = ctype.split(";")[0].strip()
    return status, media, (json.loads(raw) if raw and "json" in media else None)


@pytest.fixture(scope="module")
def doc(server):
    status, media, body = call(server["base"], "GET", "/openapi.json")
    assert (status, media) == (200, "application/json")
    return body


@pytest.fixture(scope="module")
def admin(server):
    token = (server["data"] / "admin-token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def check(doc, template, method, status, media, body):
    """Validates `body` against the documented response schema."""
    op = doc["paths"][template][method]
    response = op["responses"].get(str(status))
    assert response is not None, f"{method} {template}: status {status} is not documented"
    content = response.get("content") or {}
    assert media in content, f"{method} {template} {status}: {media} not in {list(content)}"
    schema = content[media]["schema"]
    # The whole document as the root resource, so `#/components/schemas/…` resolves.
    OAS31Validator({**doc, **schema}).validate(body)


NAGRA = "/{tenant}/cks-ws-keyAndSignalization/key"


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_packager_json_answers_match_their_schemas(server, doc):
    base = server["base"]
    basic = {"Authorization": "Basic " + base64.b64encode(b"packager:s3cret-acme").decode()}
    request = {"drmContent": {"drmContentId": f"oa-{uuid.uuid4().hex[:8]}",
                              "profile": {"distributionMode": "VOD"}}}

    status, media, body = call(base, "POST", "/acme/cks-ws-keyAndSignalization/key",
                               body=request, headers=basic)
    assert status == 200, body
    check(doc, NAGRA, "post", status, media, body)

    # Errors in the NAGRA format: no credentials, and a body without drmContent.
    status, media, body = call(base, "POST", "/acme/cks-ws-keyAndSignalization/key", body=request)
    assert status == 401
    check(doc, NAGRA, "post", status, media, body)
    status, media, body = call(base, "POST", "/acme/cks-ws-keyAndSignalization/key",
                               body={}, headers=basic)
    assert status == 400
    check(doc, NAGRA, "post", status, media, body)

    # A Clear Key licence request without an entitlement token: a problem document.
    status, media, body = call(base, "POST", "/acme/clearkey/v1/licenses",
                               body={"kids": ["AAAAAAAAAAAAAAAAAAAAAA"], "type": "temporary"})
    assert 400 <= status < 500
    check(doc, "/{tenant}/clearkey/v1/licenses", "post", status, media, body)


def test_admin_answers_match_their_schemas(server, doc, admin):
    base = server["base"]
    tenant = f"oa{uuid.uuid4().hex[:8]}"

    status, media, body = call(base, "POST", "/admin/v1/tenants", body={"id": tenant}, headers=admin)
    assert status == 201, body
    check(doc, "/admin/v1/tenants", "post", status, media, body)
    status, media, body = call(base, "POST", "/admin/v1/tenants", body={"id": tenant}, headers=admin)
    assert status == 409
    check(doc, "/admin/v1/tenants", "post", status, media, body)
    status, media, body = call(base, "POST", "/admin/v1/tenants", body={"id": tenant})
    assert status == 401
    check(doc, "/admin/v1/tenants", "post", status, media, body)

    status, media, body = call(base, "GET", "/admin/v1/tenants", headers=admin)
    check(doc, "/admin/v1/tenants", "get", status, media, body)
    status, media, body = call(base, "GET", f"/admin/v1/tenants/{tenant}", headers=admin)
    check(doc, "/admin/v1/tenants/{id}", "get", status, media, body)
    status, media, body = call(base, "PATCH", f"/admin/v1/tenants/{tenant}",
                               body={"disabled": True}, headers=admin)
    assert status == 200, body
    check(doc, "/admin/v1/tenants/{id}", "patch", status, media, body)

    creds = f"/admin/v1/tenants/{tenant}/credentials"
    status, media, body = call(base, "POST", creds, headers=admin,
                               body={"type": "basic", "user": "p", "password": "a-long-password"})
    assert status == 201, body
    check(doc, "/admin/v1/tenants/{id}/credentials", "post", status, media, body)
    status, media, body = call(base, "POST", creds, headers=admin, body={"type": "carrier-pigeon"})
    assert status == 400, body
    check(doc, "/admin/v1/tenants/{id}/credentials", "post", status, media, body)
    status, media, body = call(base, "GET", creds, headers=admin)
    check(doc, "/admin/v1/tenants/{id}/credentials", "get", status, media, body)

    # acme has keys from the packager test (or gets some now): contents, their keys, audit.
    basic = {"Authorization": "Basic " + base64.b64encode(b"packager:s3cret-acme").decode()}
    content = f"oa-admin-{uuid.uuid4().hex[:8]}"
    status, _, _ = call(base, "POST", "/acme/cks-ws-keyAndSignalization/key", headers=basic,
                        body={"drmContent": {"drmContentId": content,
                                             "profile": {"distributionMode": "VOD"}}})
    assert status == 200
    status, media, body = call(base, "GET", "/admin/v1/tenants/acme/contents", headers=admin)
    check(doc, "/admin/v1/tenants/{id}/contents", "get", status, media, body)
    status, media, body = call(base, "GET", f"/admin/v1/tenants/acme/contents/{content}/keys",
                               headers=admin)
    assert status == 200, body
    check(doc, "/admin/v1/tenants/{id}/contents/{content_id}/keys", "get", status, media, body)
    status, media, body = call(base, "GET", f"/admin/v1/audit?tenant=acme&content_id={content}",
                               headers=admin)
    assert status == 200, body
    check(doc, "/admin/v1/audit", "get", status, media, body)
    status, media, body = call(base, "GET", "/admin/v1/audit?since=yesterday", headers=admin)
    assert status == 400
    check(doc, "/admin/v1/audit", "get", status, media, body)
    status, media, body = call(base, "GET", "/admin/v1/stats?tenant=acme", headers=admin)
    assert status == 200, body
    check(doc, "/admin/v1/stats", "get", status, media, body)
