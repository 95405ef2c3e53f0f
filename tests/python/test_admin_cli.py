"""The operator's commands against the real binary: `keyplex admin …` and `keyplex audit`.

A no-config start prints an admin token once; with it the CLI creates a tenant, adds and
revokes credentials (effective at once), reads the audit trail, exports a tenant's keys to an
RSA key made here, imports them into a fresh installation, and rotates the master key. The
export bundle is also opened here with `cryptography` (RSA-OAEP-SHA256 + AES-256-GCM), so its
format is checked by code keyplex did not write.
"""

import base64
import json
import re
import subprocess
import urllib.error
import urllib.request
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import keyplex_proc
from test_cli import start, stop


def cli(keyplex_bin, base, token_file, *args, check=True):
    result = subprocess.run(
        [str(keyplex_bin), *args, "--url", base, "--token-file", str(token_file)],
        capture_output=True, text=True, timeout=60,
    )
    if check:
        assert result.returncode == 0, f"{args}: {result.stderr}"
    return result


def cli_json(keyplex_bin, base, token_file, *args):
    return json.loads(cli(keyplex_bin, base, token_file, *args).stdout)


def cpix_key(base, tenant, user, password, content, kid=None):
    """(status, kid, key bytes) of a CPIX request for one key of `content`."""
    kid = kid or str(uuid.uuid4())
    body = (
        f'<cpix:CPIX contentId="{content}" xmlns:cpix="urn:dashif:org:cpix" '
        f'xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><cpix:ContentKeyList>'
        f'<cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList></cpix:CPIX>'
    )
    req = urllib.request.Request(f"{base}/{tenant}/cpix", data=body.encode(), method="POST")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, kid, None
    value = re.search(r"<pskc:PlainValue>([^<]+)</pskc:PlainValue>", text).group(1)
    keyplex_proc.saw_key(base64.b64decode(value))
    return 200, kid, base64.b64decode(value)


def rsa_pair(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "operator.pub.pem").write_bytes(public_pem)
    (tmp_path / "operator.key.pem").write_bytes(private_pem)
    return private


def open_bundle(private, bundle) -> list:
    """Decrypts a keyplex key bundle with standard primitives only."""
    assert bundle["format"] == "keyplex-key-bundle/1"
    assert (bundle["key_encryption"], bundle["content_encryption"]) == ("RSA-OAEP-256", "A256GCM")
    bundle_key = private.decrypt(
        base64.b64decode(bundle["encrypted_key"]),
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    payload = AESGCM(bundle_key).decrypt(
        base64.b64decode(bundle["nonce"]), base64.b64decode(bundle["ciphertext"]),
        b"keyplex-key-bundle/1")
    return json.loads(payload)


def test_operator_cli_end_to_end(keyplex_bin, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    proc, base = start(keyplex_bin, first)
    try:
        token_file = first / "keyplex-data" / "admin-token"
        out_so_far = ""
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()

        # The dashboard page is served; its data needs the token.
        with urllib.request.urlopen(base + "/ui/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        denied = subprocess.run([str(keyplex_bin), "admin", "--url", base, "--token", "wrong-token",
                                 "tenants", "list"], capture_output=True, text=True, timeout=30)
        assert denied.returncode != 0 and "401" in denied.stderr, denied.stderr

        tenants = cli_json(keyplex_bin, base, token_file, "admin", "tenants", "list")
        assert [t["id"] for t in tenants["tenants"]] == ["demo"]
        created = cli_json(keyplex_bin, base, token_file, "admin", "tenants", "create", "hooli",
                           "--settings", '{"kid_override": false}')
        assert created["source"] == "admin"
        cred = cli_json(keyplex_bin, base, token_file, "admin", "credentials", "add", "hooli",
                        "--type", "basic", "--set", "user=encoder")
        password = cred["secret"]
        status, kid, key = cpix_key(base, "hooli", "encoder", password, "movie-1")
        assert status == 200

        # Revoked: refused by the very next request.
        cli(keyplex_bin, base, token_file, "admin", "credentials", "revoke", "hooli", cred["id"])
        assert cpix_key(base, "hooli", "encoder", password, "movie-1", kid)[0] == 401
        cli(keyplex_bin, base, token_file, "admin", "credentials", "add", "hooli", "--type", "basic",
            "--set", "user=encoder", "--set", "password=the-second-password")
        status, _, again = cpix_key(base, "hooli", "encoder", "the-second-password", "movie-1", kid)
        assert status == 200 and again == key

        # The audit trail: who created the key, who changed the credentials.
        events = cli_json(keyplex_bin, base, token_file, "audit", "--tenant", "hooli", "--json")["events"]
        actions = [e["action"] for e in reversed(events)]
        assert actions[:2] == ["admin.tenant_created", "admin.credential_added"], actions
        assert "admin.credential_revoked" in actions and "key.created" in actions, actions
        created_event = next(e for e in events if e["action"] == "key.created")
        assert created_event["credential"] == "basic:encoder"
        assert created_event["key_ids"] == [kid] and created_event["content_id"] == "movie-1"
        table = cli(keyplex_bin, base, token_file, "audit", "--tenant", "hooli", "--content-id", "movie-1").stdout
        assert "key.created" in table and kid in table
        assert base64.b64encode(key).decode() not in table + json.dumps(events)

        contents = cli_json(keyplex_bin, base, token_file, "admin", "contents", "list", "hooli", "--search", "MOVIE")
        assert [c["content_id"] for c in contents["contents"]] == ["movie-1"]
        keys = cli_json(keyplex_bin, base, token_file, "admin", "contents", "keys", "hooli", "movie-1")
        assert [k["kid"] for k in keys["keys"]] == [kid]

        # Licence rules stored with the content: set, shown, refused when misspelt, removed.
        policy = cli_json(keyplex_bin, base, token_file, "admin", "contents", "policy", "hooli", "movie-1",
                          "--set", '{"security_level": {"SD": 3, "HD": 1}, "hdcp": "HDCP_V2_2"}')
        assert policy["source"] == "content" and policy["policy"]["security_level"] == {"HD": 1, "SD": 3}
        shown = cli_json(keyplex_bin, base, token_file, "admin", "contents", "policy", "hooli", "movie-1")
        assert shown == policy
        bad = cli(keyplex_bin, base, token_file, "admin", "contents", "policy", "hooli", "movie-1",
                  "--set", '{"hdpc": "HDCP_V1"}', check=False)
        assert bad.returncode != 0 and "hdpc" in bad.stderr, bad.stderr
        removed = cli(keyplex_bin, base, token_file, "admin", "contents", "policy", "hooli", "movie-1", "--delete")
        assert "removed" in removed.stdout
        gone = cli(keyplex_bin, base, token_file, "admin", "contents", "policy", "hooli", "movie-1", check=False)
        assert gone.returncode != 0 and "404" in gone.stderr, gone.stderr

        # Export to an operator key made here; open the bundle independently.
        private = rsa_pair(tmp_path)
        bundle_path = tmp_path / "hooli.bundle.json"
        cli(keyplex_bin, base, token_file, "admin", "export", "hooli",
            "--public-key", str(tmp_path / "operator.pub.pem"), "--out", str(bundle_path))
        bundle = json.loads(bundle_path.read_text())
        assert base64.b64encode(key).decode() not in bundle_path.read_text()
        payload = open_bundle(private, bundle)
        assert [(k["kid"], base64.b64decode(k["key"])) for k in payload] == [(kid, key)]

        # Rotate the master key online: the key is served unchanged, before and after a restart.
        rotated = cli_json(keyplex_bin, base, token_file, "admin", "master-key", "rotate")
        assert rotated["old_fingerprint"] != rotated["new_fingerprint"] and rotated["rewrapped"] >= 2
        assert cpix_key(base, "hooli", "encoder", "the-second-password", "movie-1", kid)[2] == key
    finally:
        out_so_far = stop(proc)
    assert token in out_so_far, "the admin token is printed on the start that creates it"
    proc, base = start(keyplex_bin, first)
    try:
        assert cpix_key(base, "hooli", "encoder", "the-second-password", "movie-1", kid)[2] == key
    finally:
        out = stop(proc)
    assert token not in out, "printed once only"

    # Import into a fresh installation: identical key.
    second = tmp_path / "second"
    second.mkdir()
    proc, base = start(keyplex_bin, second)
    try:
        token_file = second / "keyplex-data" / "admin-token"
        cli(keyplex_bin, base, token_file, "admin", "tenants", "create", "hooli")
        cli(keyplex_bin, base, token_file, "admin", "credentials", "add", "hooli", "--type", "basic",
            "--set", "user=restorer", "--set", "password=restorer-password")
        result = cli_json(keyplex_bin, base, token_file, "admin", "import", "hooli",
                          "--bundle", str(bundle_path), "--private-key", str(tmp_path / "operator.key.pem"))
        assert result == {"imported": 1, "already_present": 0}
        status, _, restored = cpix_key(base, "hooli", "restorer", "restorer-password", "movie-1", kid)
        assert status == 200 and restored == key
    finally:
        stop(proc)
