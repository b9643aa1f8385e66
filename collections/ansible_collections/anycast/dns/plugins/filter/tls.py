# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the zone-transfer TLS certificates (XoT). Documentation: tls_pin.yml next to this file."""

from __future__ import annotations

import base64
import hashlib

from ansible.errors import AnsibleFilterError

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - the controller's requirements bring it
    HAS_CRYPTOGRAPHY = False


def tls_pin(pem):
    """The public-key pin of a PEM certificate or public key: base64(SHA-256(SubjectPublicKeyInfo DER)),
    as Knot's cert-key option and RFC 7858's SPKI pin sets write it."""
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("tls_pin needs the Python package cryptography on the controller")
    if not isinstance(pem, str) or "-----BEGIN" not in pem:
        raise AnsibleFilterError(f"tls_pin: expects a PEM certificate or public key, got {str(pem)[:60]!r}")
    data = pem.encode()
    try:
        if "CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AnsibleFilterError(f"tls_pin: not a readable PEM certificate or public key: {exc}") from exc
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class FilterModule:
    def filters(self):
        return {"tls_pin": tls_pin}
