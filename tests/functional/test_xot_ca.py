"""The private CA of the zone-transfer TLS certificates (knot_dns tasks/ca.yml), on the controller
alone: made right on the first run and left alone after it; every wrong CA refused before any node
is touched, with a message naming the key and the file."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import run_playbook

PASSPHRASE = b"test-passphrase"
NOW = datetime.datetime.now(datetime.UTC)


def run(pki: Path) -> subprocess.CompletedProcess:
    """The CA tasks on this controller (an empty inventory: Ansible's implicit, local localhost)."""
    hosts = pki.parent / "hosts.yml"
    hosts.write_text("all: {}\n")
    return run_playbook("tests/functional/playbooks/xot_ca.yml", hosts, "-e", f"pki={pki}", timeout=120)


def key_pem(key, passphrase=PASSPHRASE) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(passphrase))


def certificate(subject_key, name, issuer_key=None, issuer_name=None, *, ca=True, days=(-1, 3650)):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else subject
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(NOW + datetime.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key or subject_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_ca(pki: Path, *, days=(-1, 3650), ca=True, cert_key=None) -> ec.EllipticCurvePrivateKey:
    """A CA in PKI: its key, and a self-signed certificate (of CERT_KEY's public key when given)."""
    pki.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    (pki / "ca.key").write_bytes(key_pem(key))
    signer = cert_key or key
    (pki / "ca.crt").write_bytes(certificate(signer, "test CA", days=days, ca=ca))
    return key


def test_first_run_makes_an_encrypted_ca_and_the_next_run_changes_nothing(tmp_path):
    pki = tmp_path / "pki"
    first = run(pki)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ENCRYPTED PRIVATE KEY" in (pki / "ca.key").read_text()
    with pytest.raises(TypeError):  # useless without the vault's passphrase
        serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (pki / "issued").is_dir()
    second = run(pki)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout.split("PLAY RECAP", 1)[1]
    assert (pki / "ca.crt").read_bytes() == cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("missing", ["ca.key", "ca.crt"])
def test_a_ca_with_one_file_missing_is_refused_and_not_replaced(tmp_path, missing):
    pki = tmp_path / "pki"
    write_ca(pki)
    (pki / missing).unlink()
    result = run(pki)
    assert result.returncode != 0
    key = "knot_dns_xot_ca.key" if missing == "ca.key" else "knot_dns_xot_ca.cert"
    assert f"{key} {pki / missing} is missing" in " ".join(result.stdout.split())
    assert not (pki / missing).exists()


def test_a_certificate_that_is_not_the_keys_is_refused(tmp_path):
    pki = tmp_path / "pki"
    write_ca(pki, cert_key=ec.generate_private_key(ec.SECP384R1()))
    out = " ".join(run(pki).stdout.split())
    assert (f"knot_dns_xot_ca.cert {pki / 'ca.crt'} is not the certificate of "
            f"knot_dns_xot_ca.key {pki / 'ca.key'}") in out


def test_a_certificate_that_is_not_a_ca_is_refused(tmp_path):
    pki = tmp_path / "pki"
    write_ca(pki, ca=False)
    out = " ".join(run(pki).stdout.split())
    assert f"knot_dns_xot_ca.cert {pki / 'ca.crt'} is not a CA certificate" in out


@pytest.mark.parametrize(("days", "says"), [((-30, -1), "expired on"), ((-1, 10), "before a certificate issued now")])
def test_an_expired_or_expiring_ca_is_refused(tmp_path, days, says):
    pki = tmp_path / "pki"
    write_ca(pki, days=days)
    out = " ".join(run(pki).stdout.split())
    assert f"knot_dns_xot_ca.cert {pki / 'ca.crt'}" in out and says in out


def test_a_ca_that_did_not_issue_the_nodes_certificates_is_refused(tmp_path):
    pki = tmp_path / "pki"
    ca_key = write_ca(pki)
    other = ec.generate_private_key(ec.SECP384R1())
    node = ec.generate_private_key(ec.SECP256R1())
    (pki / "issued").mkdir()
    (pki / "issued" / "hkg1.crt").write_bytes(certificate(node, "hkg1", ca_key, "test CA", ca=False))
    assert run(pki).returncode == 0  # issued by this CA: fine
    (pki / "issued" / "primary1.crt").write_bytes(certificate(node, "primary1", other, "another CA", ca=False))
    result = run(pki)
    out = " ".join(result.stdout.split())
    assert result.returncode != 0
    assert f"did not issue {pki / 'issued' / 'primary1.crt'}:" in out
    assert "hkg1.crt" not in out.split("did not issue")[1]
