"""Streaming between an engine and the store, in bounded memory.

Backup: raw chunks -> SHA-256 of the raw stream -> zstd or gzip -> SHA-256 of the stored bytes ->
a sink (the multipart upload). Restore and verify: stored chunks -> SHA-256 -> bounded
decompression (a decompression bomb stops at the manifest's raw size) -> SHA-256 -> a sink.
Each chunk is at most ``CHUNK`` bytes; nothing holds a whole artifact in memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

import zstandard

from backstop.errors import ChecksumMismatchError, DecompressionBombError, IntegrityError

CHUNK = 1024 * 1024
ZSTD_JOB_SIZE = 4 * 1024 * 1024
ZSTD_WORKERS = 1
BACKGROUND_NICE = 10
Algorithm = Literal["zstd", "gzip"]
Sink = Callable[[bytes], object]
Progress = Callable[[int], None]


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Gzip:
    """A gzip member (RFC 1952) that ``gzip -d`` and ``zcat`` read."""

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush()


def _compressor(algorithm: Algorithm, level: int) -> _Compressor:
    if algorithm == "zstd":
        # One compression worker beside the reading and hashing thread: on two cores, a worker per core
        # starves the integrity check that runs alongside (measured in docs/benchmarks.md). 4 MiB jobs
        # keep zstd's own buffers small (the default job size at level 3 costs ~60 MiB of memory).
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=ZSTD_WORKERS, job_size=ZSTD_JOB_SIZE, write_checksum=True
        )
        return zstandard.ZstdCompressor(compression_params=params).compressobj()
    return _Gzip(level)


def lower_thread_priority(increment: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority by ``increment`` nice steps (Linux only; best effort).

    Threads it starts afterwards (zstd's workers, an upload pool) inherit the lower priority. An
    unprivileged process can lower a priority but never raise it back, so call this only in a
    thread that ends with its work, never in the main thread.
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + increment))


class StreamStopped(Exception):
    """compress_stream was told to stop: whoever set ``stop`` is already raising its own error."""


def extension(algorithm: Algorithm) -> str:
    """File extension of the compressed artifact."""
    return "zst" if algorithm == "zstd" else "gz"


@dataclass(frozen=True)
class StreamDigest:
    """What went through a pipeline: sizes and SHA-256 of both sides of the compressor."""

    raw_size: int
    raw_sha256: str
    stored_size: int
    stored_sha256: str


def compress_stream(
    source: BinaryIO,
    sink: Sink,
    *,
    algorithm: Algorithm,
    level: int,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> StreamDigest:
    """Read ``source`` to its end, compress, hash both sides and hand the stored bytes to ``sink``.

    When it runs in another thread, setting ``stop`` ends it at the next chunk with StreamStopped.
    ``checkpoint`` is called before each chunk: what it raises (a deadline) ends the stream there.
    """
    compressor = _compressor(algorithm, level)
    raw_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    raw_size = stored_size = 0

    def emit(data: bytes) -> None:
        nonlocal stored_size
        if data:
            stored_hash.update(data)
            stored_size += len(data)
            sink(data)

    while chunk := source.read(CHUNK):
        if stop is not None and stop.is_set():
            raise StreamStopped("the stream was stopped before its end")
        if checkpoint is not None:
            checkpoint()
        raw_hash.update(chunk)
        raw_size += len(chunk)
        emit(compressor.compress(chunk))
        if progress is not None:
            progress(len(chunk))
    emit(compressor.flush())
    return StreamDigest(raw_size, raw_hash.hexdigest(), stored_size, stored_hash.hexdigest())


class _HashingReader:
    """A file-like view of stored chunks that hashes and counts every byte it hands out."""

    def __init__(self, chunks: Iterator[bytes], progress: Progress | None) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.hash = hashlib.sha256()
        self.size = 0
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self.hash.update(chunk)
            self.size += len(chunk)
            if self._progress is not None:
                self._progress(len(chunk))
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _decompressed_chunks(reader: _HashingReader, algorithm: Algorithm) -> Iterator[bytes]:
    if algorithm == "zstd":
        zreader = zstandard.ZstdDecompressor().stream_reader(reader, read_size=CHUNK, read_across_frames=True)  # type: ignore[arg-type]  # duck-typed file
        while chunk := zreader.read(CHUNK):
            yield chunk
        return
    with gzip.GzipFile(fileobj=reader, mode="rb") as gz:  # type: ignore[call-overload]  # duck-typed file
        while chunk := gz.read(CHUNK):
            yield chunk


def decompress_stream(
    chunks: Iterator[bytes],
    sink: Sink,
    *,
    algorithm: Algorithm,
    expected: StreamDigest,
    what: str,
    progress: Progress | None = None,
) -> StreamDigest:
    """Decompress stored ``chunks`` into ``sink`` and check them against ``expected``.

    Raises ChecksumMismatchError when the stored bytes differ from what was uploaded (checked
    first: a flipped byte is named as such, not as a decompression error), DecompressionBombError
    when the output grows past the recorded raw size, and IntegrityError when the raw stream
    differs or cannot be decompressed.
    """
    reader = _HashingReader(chunks, progress)
    raw_hash = hashlib.sha256()
    raw_size = 0
    failure: str | None = None
    decompressed = _decompressed_chunks(reader, algorithm)
    while True:
        try:
            chunk = next(decompressed)
        except StopIteration:
            break
        except (zstandard.ZstdError, OSError, EOFError, zlib.error) as exc:  # gzip reports bad data as OSError
            failure = str(exc) or type(exc).__name__
            break
        raw_size += len(chunk)
        if raw_size > expected.raw_size:
            raise DecompressionBombError(
                f"{what} decompresses past its recorded raw size of {expected.raw_size} bytes; stopped there."
            )
        raw_hash.update(chunk)
        # Outside the try: a write that fails here (disk full, file too large) is this machine's
        # problem, not the backup's, and must never be reported as a corrupt backup.
        sink(chunk)
    reader.drain()
    stored = StreamDigest(raw_size, raw_hash.hexdigest(), reader.size, reader.hash.hexdigest())
    check_stored(stored, expected, what)
    if failure is not None:
        raise IntegrityError(f"{what} matches its checksum but cannot be decompressed: {failure}.")
    if (raw_size, stored.raw_sha256) != (expected.raw_size, expected.raw_sha256):
        raise IntegrityError(
            f"{what} decompresses to {raw_size} bytes with SHA-256 {stored.raw_sha256[:12]}..., "
            f"but the manifest records {expected.raw_size} bytes with {expected.raw_sha256[:12]}...."
        )
    return stored


def check_stored(found: StreamDigest, expected: StreamDigest, what: str) -> None:
    """Compare the stored side of two digests; ChecksumMismatchError names the first difference."""
    if found.stored_size != expected.stored_size:
        raise ChecksumMismatchError(
            f"{what} is {found.stored_size} bytes but the manifest records {expected.stored_size} "
            "(truncated or replaced)."
        )
    if found.stored_sha256 != expected.stored_sha256:
        raise ChecksumMismatchError(
            f"{what} has SHA-256 {found.stored_sha256[:12]}... but the manifest records "
            f"{expected.stored_sha256[:12]}... (the stored bytes were altered)."
        )
