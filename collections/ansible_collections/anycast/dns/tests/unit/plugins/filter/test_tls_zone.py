"""The tls_pin, soa_timers and soa_timer_differences filters."""

from __future__ import annotations

import base64
import hashlib

import pytest
from ansible.errors import AnsibleFilterError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.anycast.dns.plugins.filter.tls import tls_pin
from ansible_collections.anycast.dns.plugins.filter.zone import soa_timer_differences, soa_timers

# A certificate made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256` and its
# pin as `openssl x509 -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64`
# (and as Knot 3.4 logs it: "QUIC/TLS, certificate public key <pin>").
CERT = """-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUfOxrR/IjGjxhSE8WHk8Z2kbSLgUwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGcGluLXQxMB4XDTI2MTEzMDE1MTMxMFoXDTI2MTIwMjE1MTMx
MFowETEPMA0GA1UEAwwGcGluLXQxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
1HKbhjPgWuvGU7dy43Tx+RVQ/fm6gNlaUQVJaT/6elWbbXF1VYrJ8yguHpVfcJjL
B7j6kCZuuIFtODyJfQmYRaNTMFEwHQYDVR0OBBYEFMy2vXNk013DSqbk9OP57tx1
bkTwMB8GA1UdIwQYMBaAFMy2vXNk013DSqbk9OP57tx1bkTwMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAJY8Vy4UmzrrHUuy64pxgqlGgTBjHzeB
+Clq2BZ/yRdpAiBwN68YbN8xR+GQEwxEvLcKKzQZRu5Q24B9Dj9H4CsGdQ==
-----END CERTIFICATE-----
"""
CERT_PIN = "QcwhzXRilmhrGGmLpN8a9V27DDMemPzwUxU9r6H/qvE="

ZONE = """$ORIGIN example.com.
$TTL 3600
@ IN SOA ns1 hostmaster (
        1          ; serial
        30         ; refresh
        10         ; retry
        1209600    ; expire
        300 )      ; minimum
  IN NS ns1
ns1 IN A 203.0.113.53
"""


def test_pin_of_a_public_key_is_base64_sha256_of_its_spki():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert tls_pin(pem) == base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_pin_of_a_certificate_is_its_keys_pin():
    assert tls_pin(CERT) == CERT_PIN


@pytest.mark.parametrize("bad", ["", "not a pem", None,
                                 "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_pin_of_something_else_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="tls_pin"):
        tls_pin(bad)


def test_soa_timers_are_read_from_the_zone_file():
    assert soa_timers(ZONE, "example.com") == {"refresh": 30, "retry": 10, "expire": 1209600, "minimum": 300}


def test_differences_name_the_field_and_both_values():
    assert soa_timer_differences(ZONE, "example.com", {"refresh": 30, "retry": 10}) == []
    assert soa_timer_differences(ZONE, "example.com.", {"refresh": 3600, "expire": "1209600"}) == [
        "SOA refresh 30 (the inventory says 3600)"]
    with pytest.raises(AnsibleFilterError, match="'refesh' is not an SOA timer"):
        soa_timer_differences(ZONE, "example.com", {"refesh": 30})


def test_a_zone_file_without_soa_is_refused():
    with pytest.raises(AnsibleFilterError, match="example.com"):
        soa_timers("$ORIGIN example.com.\nwww 3600 IN A 192.0.2.1\n", "example.com")
