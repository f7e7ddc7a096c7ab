"""The built runner image carries Amazon RDS's CA bundle where its engines look, and verify-full trusts it.

The image is the one `make image` builds (functions/Dockerfile unchanged); it is mounted read-only and Python
runs in it as a function's process would: Lambda's user, a writable /tmp, the image's environment. Skipped, or
under `make test` failed, where the image cannot be run here (test_runner_image_runs.unavailable).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from backstop.engines import tls
from tests.image.execution import MountedImage, function_process
from tests.image.test_runner_image_runs import image  # noqa: F401 - the fixture

pytestmark = pytest.mark.xdist_group("image")

COMMITTED = Path(__file__).resolve().parents[2] / "functions" / "certs" / "rds-global-bundle.pem"

# What verify-full trusts for a database on RDS (no tls_ca), as the engines assemble it in a run directory.
TRUST_PROBE = """
import base64, json, ssl
from pathlib import Path
from backstop.config import parse_config
from backstop.engines import tls
from backstop.errors import SourceError

config = parse_config(json.dumps({"bucket": "backstop-image-test", "databases": [{
    "name": "orders", "engine": "postgres", "host": "orders.cluster-example.eu-west-1.rds.amazonaws.com",
    "dbname": "orders", "user": "backstop", "tls": "verify-full"}]}))
with tls.trust_file(config.database("orders"), Path("/tmp"), SourceError) as trusted:
    anchors = ssl.create_default_context(cafile=str(trusted)).get_ca_certs(binary_form=True)
    print(json.dumps({"bundle": str(tls.RDS_CA_BUNDLE), "trusted": str(trusted),
                      "anchors": [base64.b64encode(der).decode() for der in anchors]}))
"""


def committed_anchors() -> set[bytes]:
    return {cert.public_bytes(Encoding.DER) for cert in x509.load_pem_x509_certificates(COMMITTED.read_bytes())}


def test_the_image_carries_the_committed_bundle_read_only_where_the_engines_look(
    image: MountedImage,  # noqa: F811
) -> None:
    # given the built image, when its file at the engines' path is read
    shipped = image.root / tls.RDS_CA_BUNDLE.relative_to("/")

    # then it is the committed bundle, root's, readable by all and writable by none but root
    assert shipped.read_bytes() == COMMITTED.read_bytes()
    status = shipped.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (0, 0, 0o644)


def test_verify_full_in_the_image_trusts_the_rds_bundle_with_the_system_s(
    image: MountedImage,  # noqa: F811
    tmp_path: Path,
) -> None:
    # given a database on RDS with tls: verify-full and no tls_ca, and Python run in the image as a function's
    # process is (Lambda's user, its /tmp)
    probe = dataclasses.replace(image, entrypoint=("/usr/bin/python3", "-c", TRUST_PROBE), command=())
    (tmp_path / "tmp").mkdir()
    log = tmp_path / "probe.log"

    # when the engines' TLS setup assembles what its connections trust
    with function_process(probe, command=(), env={}, tmp=tmp_path / "tmp", efs=None, log=log) as process:
        assert process.wait(timeout=60) == 0, log.read_text()
    found = json.loads(log.read_text().splitlines()[-1])

    # then it is the system's bundle and every certificate of the RDS bundle together, in one file in the run
    # directory, which OpenSSL (libpq's, PyMySQL's, the MariaDB client's) loads whole
    anchors = {base64.b64decode(item) for item in found["anchors"]}
    assert found["bundle"] == str(tls.RDS_CA_BUNDLE)
    assert found["trusted"] == f"/tmp/{tls.TRUST_FILE}"
    assert committed_anchors() <= anchors
    assert len(anchors) > len(committed_anchors()) + 50, "the system's CA certificates are missing"
    assert not (tmp_path / "tmp" / tls.TRUST_FILE).exists()  # removed with the run
