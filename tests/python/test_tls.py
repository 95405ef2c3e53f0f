"""HTTPS on keyplex's own listener ([server.tls]), checked with Python's ssl module (OpenSSL,
nothing of keyplex's): the certificate chain verifies against the test CA, key requests
work over TLS, and a renewed certificate is served without a restart — on SIGHUP and when
the files change — while a broken renewal keeps the previous certificate."""

import base64
import datetime
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import keyplex_proc

PACKAGER = "Basic " + base64.b64encode(b"packager:s3cret-acme").decode()


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(_name("keyplex test CA")).issuer_name(_name("keyplex test CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, key):
    """A certificate for 127.0.0.1 and localhost, signed by the CA."""
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key, fmt):
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_atomically(path, data):
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def served_serial(port, ca_pem_path):
    """The serial number of the certificate the server presents, verified against the CA."""
    context = ssl.create_default_context(cafile=str(ca_pem_path))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert tls.selected_alpn_protocol() in (None, "http/1.1")
    return x509.load_der_x509_certificate(der).serial_number


def wait_for_serial(port, ca_path, serial, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if served_serial(port, ca_path) == serial:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def certs(tmp_path):
    ca_key, ca_cert = make_ca()
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(pem_cert(ca_cert))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    first = (make_leaf(ca_key, ca_cert, ec_key), pem_key(ec_key, serialization.PrivateFormat.PKCS8))
    # PKCS#1 ("BEGIN RSA PRIVATE KEY"), the form many tools still write.
    second = (make_leaf(ca_key, ca_cert, rsa_key), pem_key(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL))
    return ca_path, first, second


def start(binary, data, cert_path, key_path, port):
    config = f"""
[server]
tls = {{ cert_file = "{cert_path}", key_file = "{key_path}" }}

[tenants.acme]
basic = [{{ user = "packager", password = "s3cret-acme" }}]
"""
    data.mkdir(parents=True, exist_ok=True)
    (data / "keyplex.toml").write_text(config)
    log = open(data / "server.log", "wb")
    return subprocess.Popen(
        [str(binary), "serve", "--config", str(data / "keyplex.toml"), "--data", str(data),
         "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)


def wait_https(proc, port, ca_path, log_path):
    context = ssl.create_default_context(cafile=str(ca_path))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"https://localhost:{port}/healthz", context=context, timeout=2) as r:
                if r.status == 200:
                    return context
        except OSError:
            pass
        assert proc.poll() is None, log_path.read_text()
        time.sleep(0.1)
    raise AssertionError("keyplex did not answer over HTTPS:\n" + log_path.read_text())


def test_https_with_certificate_reload(keyplex_bin, tmp_path, certs):
    ca_path, (cert_a, key_a), (cert_b, key_b) = certs
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(pem_cert(cert_a))
    key_path.write_bytes(key_a)
    port = keyplex_proc.free_port()
    data = tmp_path / "data"
    proc = start(keyplex_bin, data, cert_path, key_path, port)
    log_path = data / "server.log"
    try:
        context = wait_https(proc, port, ca_path, log_path)
        assert served_serial(port, ca_path) == cert_a.serial_number

        # A key request over TLS.
        kid = "4b0c5f9e-3c1a-4d2e-9f8a-7b6c5d4e3f2a"
        body = (f'<cpix:CPIX contentId="tls-movie" xmlns:cpix="urn:dashif:org:cpix" '
                f'xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><cpix:ContentKeyList>'
                f'<cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList></cpix:CPIX>').encode()
        req = urllib.request.Request(f"https://localhost:{port}/acme/cpix", data=body, method="POST")
        req.add_header("Authorization", PACKAGER)
        with urllib.request.urlopen(req, context=context, timeout=10) as r:
            text = r.read().decode()
        value = re.search(r"<pskc:PlainValue>([^<]+)</pskc:PlainValue>", text).group(1)
        keyplex_proc.saw_key(base64.b64decode(value))

        # Plain HTTP on the TLS port gets no answer from the key server.
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()

        # Renewal + SIGHUP: the new certificate from the next handshake on, no restart.
        write_atomically(key_path, key_b)
        write_atomically(cert_path, pem_cert(cert_b))
        proc.send_signal(signal.SIGHUP)
        assert wait_for_serial(port, ca_path, cert_b.serial_number), log_path.read_text()

        # A broken renewal (truncated PEM) is refused and the previous certificate stays.
        write_atomically(cert_path, pem_cert(cert_b)[:100])
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "not reloaded" not in log_path.read_text() and time.time() < deadline:
            time.sleep(0.2)
        assert "not reloaded" in log_path.read_text()
        assert served_serial(port, ca_path) == cert_b.serial_number
        assert proc.poll() is None

        # A renewal without a signal: the files' change is noticed within seconds.
        write_atomically(key_path, key_a)
        write_atomically(cert_path, pem_cert(cert_a))
        assert wait_for_serial(port, ca_path, cert_a.serial_number), log_path.read_text()
        with urllib.request.urlopen(f"https://localhost:{port}/healthz", context=context, timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "BEGIN" not in log_path.read_text(), "no PEM content in the log"


def test_a_missing_or_mismatched_certificate_stops_the_start(keyplex_bin, tmp_path, certs):
    ca_path, (cert_a, key_a), (cert_b, key_b) = certs
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    # The key of another certificate.
    cert_path.write_bytes(pem_cert(cert_a))
    key_path.write_bytes(key_b)
    proc = start(keyplex_bin, tmp_path / "d1", cert_path, key_path, keyplex_proc.free_port())
    assert proc.wait(timeout=30) != 0
    log = (tmp_path / "d1" / "server.log").read_text()
    assert "does not belong to the certificate" in log, log
    # No certificate file at all.
    proc = start(keyplex_bin, tmp_path / "d2", tmp_path / "missing.crt", key_path, keyplex_proc.free_port())
    assert proc.wait(timeout=30) != 0
    log = (tmp_path / "d2" / "server.log").read_text()
    assert "missing.crt" in log, log
