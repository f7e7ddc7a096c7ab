"""The streaming pipeline: what it stores is standard zstd/gzip, and every corruption is caught and named."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import subprocess
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from backstop.errors import ChecksumMismatchError, DecompressionBombError, IntegrityError
from backstop.pipeline import CHUNK, Algorithm, StreamDigest, compress_stream, decompress_stream, extension

MIB = 1024 * 1024
ALGORITHMS: list[Algorithm] = ["zstd", "gzip"]


def compress(data: bytes, algorithm: Algorithm, level: int = 3) -> tuple[bytes, StreamDigest]:
    stored: list[bytes] = []
    digest = compress_stream(io.BytesIO(data), stored.append, algorithm=algorithm, level=level)
    return b"".join(stored), digest


def decompress(stored: bytes, algorithm: Algorithm, expected: StreamDigest, piece: int = CHUNK) -> bytes:
    out = bytearray()
    chunks = (stored[i : i + piece] for i in range(0, len(stored), piece))
    decompress_stream(chunks, out.extend, algorithm=algorithm, expected=expected, what="Backup orders-1")
    return bytes(out)


def database_like(size: int, seed: int = 7) -> bytes:
    """Compressible but not trivial bytes, like rows of a table."""
    rng = random.Random(seed)
    rows = bytearray()
    while len(rows) < size:
        rows += f"{len(rows)}|customer {rng.randrange(10_000)}|{rng.random():.6f}|{'x' * rng.randrange(40)}\n".encode()
    return bytes(rows[:size])


def flipped(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


_data = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.binary(min_size=1, max_size=64), max_size=50).map(lambda parts: b"".join(parts) * 20),
)


@settings(max_examples=60, deadline=None)
@given(data=_data, algorithm=st.sampled_from(ALGORITHMS), level=st.integers(1, 9), piece=st.integers(1, 5000))
def test_round_trip_gives_back_the_bytes_and_their_digests(
    data: bytes, algorithm: Algorithm, level: int, piece: int
) -> None:
    stored, digest = compress(data, algorithm, level)

    restored = decompress(stored, algorithm, digest, piece)

    assert restored == data
    assert digest == StreamDigest(
        raw_size=len(data),
        raw_sha256=hashlib.sha256(data).hexdigest(),
        stored_size=len(stored),
        stored_sha256=hashlib.sha256(stored).hexdigest(),
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_stream_larger_than_a_chunk_round_trips(algorithm: Algorithm) -> None:
    data = database_like(3 * CHUNK + 12345)
    progress: list[int] = []

    stored: list[bytes] = []
    digest = compress_stream(io.BytesIO(data), stored.append, algorithm=algorithm, level=3, progress=progress.append)

    assert sum(progress) == len(data)
    assert len(progress) == 4
    assert decompress(b"".join(stored), algorithm, digest) == data


@pytest.mark.parametrize(
    ("algorithm", "command"), [("zstd", ["zstd", "-d", "-c", "-q"]), ("gzip", ["gzip", "-d", "-c"])]
)
def test_stored_bytes_decompress_with_the_standard_tool(
    algorithm: Algorithm, command: list[str], tmp_path: Path
) -> None:
    data = database_like(2 * CHUNK + 999) + bytes(range(256)) * 64
    stored, digest = compress(data, algorithm)
    artifact = tmp_path / f"orders.sqlite.{extension(algorithm)}"
    artifact.write_bytes(stored)

    restored = subprocess.run([*command, str(artifact)], check=True, capture_output=True).stdout
    sha256sum = subprocess.run(["sha256sum", str(artifact)], check=True, capture_output=True, text=True).stdout

    assert restored == data
    assert sha256sum.split()[0] == digest.stored_sha256


@settings(max_examples=15, deadline=None)
@given(data=_data, algorithm=st.sampled_from(ALGORITHMS))
def test_any_stored_stream_decompresses_with_the_standard_tool(data: bytes, algorithm: Algorithm) -> None:
    stored, _ = compress(data, algorithm)
    command = ["zstd", "-d", "-c", "-q"] if algorithm == "zstd" else ["gzip", "-d", "-c"]

    restored = subprocess.run(command, input=stored, check=True, capture_output=True).stdout

    assert restored == data


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_byte_is_named_as_a_sha256_mismatch(algorithm: Algorithm, where: float) -> None:
    stored, digest = compress(database_like(300_000), algorithm)
    position = int(len(stored) * where) if where >= 0 else len(stored) - 1

    with pytest.raises(ChecksumMismatchError, match="SHA-256") as caught:
        decompress(flipped(stored, position), algorithm, digest)

    assert "altered" in str(caught.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("keep", [0, 0.5, -1])
def test_truncated_stream_is_named_by_its_size(algorithm: Algorithm, keep: float) -> None:
    stored, digest = compress(database_like(300_000), algorithm)
    cut = stored[: int(len(stored) * keep)] if keep >= 0 else stored[:-1]

    with pytest.raises(ChecksumMismatchError, match="truncated") as caught:
        decompress(cut, algorithm, digest)

    assert f"is {len(cut)} bytes but the manifest records {len(stored)}" in str(caught.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_stream_that_decompresses_to_other_bytes_than_recorded_is_refused(algorithm: Algorithm) -> None:
    # The stored bytes are the ones recorded, but the raw side of the manifest disagrees.
    stored, digest = compress(database_like(50_000), algorithm)
    wrong_raw = StreamDigest(
        digest.raw_size, hashlib.sha256(b"other").hexdigest(), digest.stored_size, digest.stored_sha256
    )

    with pytest.raises(IntegrityError, match="decompresses to") as caught:
        decompress(stored, algorithm, wrong_raw)

    assert not isinstance(caught.value, ChecksumMismatchError)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_recorded_bytes_that_are_not_compressed_data_are_refused(algorithm: Algorithm) -> None:
    junk = database_like(10_000)
    recorded = StreamDigest(10_000, hashlib.sha256(junk).hexdigest(), len(junk), hashlib.sha256(junk).hexdigest())

    with pytest.raises(IntegrityError, match="cannot be decompressed"):
        decompress(junk, algorithm, recorded)


def bomb(algorithm: Algorithm, expanded: int) -> bytes:
    """A tiny artifact that expands to ``expanded`` zero bytes, built without holding them in memory."""
    out = io.BytesIO()
    if algorithm == "zstd":
        compressor = zstandard.ZstdCompressor(level=3).compressobj()
        for _ in range(expanded // MIB):
            out.write(compressor.compress(bytes(MIB)))
        out.write(compressor.flush())
    else:
        z = zlib.compressobj(1, zlib.DEFLATED, 31)
        for _ in range(expanded // MIB):
            out.write(z.compress(bytes(MIB)))
        out.write(z.flush())
    return out.getvalue()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decompression_bomb_stops_at_the_recorded_raw_size(algorithm: Algorithm) -> None:
    stored = bomb(algorithm, 200 * MIB)
    recorded = StreamDigest(
        raw_size=MIB,
        raw_sha256=hashlib.sha256(bytes(MIB)).hexdigest(),
        stored_size=len(stored),
        stored_sha256=hashlib.sha256(stored).hexdigest(),
    )
    received = 0

    def sink(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)

    tracemalloc.start()
    try:
        with pytest.raises(DecompressionBombError, match=f"recorded raw size of {MIB} bytes"):
            decompress_stream(iter([stored]), sink, algorithm=algorithm, expected=recorded, what="Backup orders-1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(stored) < MIB  # the premise: a small object ...
    assert received <= MIB  # ... of which nothing past the recorded size reached the target
    assert peak < 32 * MIB  # and the 200 MB were never held


def test_gzip_output_is_a_standard_gzip_member() -> None:
    stored, _ = compress(b"hello backstop\n" * 100, "gzip", level=6)

    assert stored[:2] == b"\x1f\x8b"
    assert gzip.decompress(stored) == b"hello backstop\n" * 100


def test_zstd_output_carries_a_content_checksum() -> None:
    stored, _ = compress(b"hello backstop\n" * 100, "zstd")

    params = zstandard.get_frame_parameters(stored)

    assert params.has_checksum


def test_extension_names_the_format() -> None:
    assert (extension("zstd"), extension("gzip")) == ("zst", "gz")


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_progress_counts_every_stored_byte_read(algorithm: Algorithm) -> None:
    stored, digest = compress(database_like(200_000), algorithm)
    seen: list[int] = []

    decompress_stream(
        chunks_of(stored, 4096), lambda _c: None, algorithm=algorithm, expected=digest, what="B", progress=seen.append
    )

    assert sum(seen) == len(stored)
