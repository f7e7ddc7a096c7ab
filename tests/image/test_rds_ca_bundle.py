"""The Amazon RDS CA bundle the runner image carries (functions/certs/): Amazon RDS CAs, nothing else, each once.

Read here, on the host, as the file committed; tests/image/test_rds_ca_in_image.py finds it in the built image
and tests/engines/test_rds_ca_trust.py shows verify-full connecting through it.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from backstop.engines import tls

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
BUNDLE = FUNCTIONS / "certs" / "rds-global-bundle.pem"
PROVENANCE = FUNCTIONS / "certs" / "README.md"
PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n")


@pytest.fixture(scope="module")
def certificates() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(BUNDLE.read_bytes())


def attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(item.value) for item in cert.subject.get_attributes_for_oid(oid)]


def test_every_certificate_is_an_amazon_rds_certificate_authority(certificates: list[x509.Certificate]) -> None:
    assert certificates
    for cert in certificates:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca, cert.subject
        assert attribute(cert, NameOID.ORGANIZATION_NAME) == ["Amazon Web Services, Inc."], cert.subject
        assert attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["Amazon RDS"], cert.subject
        [common_name] = attribute(cert, NameOID.COMMON_NAME)
        assert common_name.startswith("Amazon RDS "), cert.subject


def test_the_file_holds_certificates_only_each_once(certificates: list[x509.Certificate]) -> None:
    text = BUNDLE.read_bytes()

    assert PEM_BLOCK.sub(b"", text) == b""  # no comment, key or stray text between or around them
    assert len(PEM_BLOCK.findall(text)) == len(certificates)
    fingerprints = [cert.fingerprint(hashes.SHA256()) for cert in certificates]
    assert len(set(fingerprints)) == len(fingerprints)


def test_openssl_loads_every_certificate_as_a_trust_anchor(certificates: list[x509.Certificate]) -> None:
    # what libpq, PyMySQL and the MariaDB client do with the file (all three use OpenSSL)
    context = ssl.create_default_context(cafile=str(BUNDLE))

    assert len(context.get_ca_certs()) == len(certificates)


def test_the_provenance_readme_describes_this_file(certificates: list[x509.Certificate]) -> None:
    readme = PROVENANCE.read_text(encoding="utf-8")

    assert f"| certificates | {len(certificates)}: " in readme
    assert f"| sha256 of `rds-global-bundle.pem` | `{hashlib.sha256(BUNDLE.read_bytes()).hexdigest()}` |" in readme


def test_the_image_copies_the_file_where_the_engines_look_for_it() -> None:
    dockerfile = (FUNCTIONS / "Dockerfile").read_text(encoding="utf-8")
    ignored = (FUNCTIONS / ".dockerignore").read_text(encoding="utf-8").splitlines()

    assert f"\nCOPY --chmod=0644 certs/rds-global-bundle.pem {tls.RDS_CA_BUNDLE}\n" in dockerfile
    assert "!certs/rds-global-bundle.pem" in ignored  # in the build context, the README beside it is not
