"""The runner image as Lambda runs it, here: its own entry point, in its own root file system, read-only.

There is no container runtime that starts here (``podman run`` fails on this kernel), so an
execution environment is made by hand, as root: ``podman image mount`` gives the image's root file
system read-only (as Lambda's is); a private mount namespace (``unshare --mount``) adds what Lambda
adds, a writable ``/tmp``, the function's EFS access point under ``/mnt``, ``/proc``, ``/dev`` and
``/etc/hosts`` (as any container runtime does); then ``chroot`` starts the image's ENTRYPOINT and
the function's handler command as Lambda's unprivileged user, with the image's environment, Lambda's
own variables and the function's. The network is the host's: the runtime API, the S3 emulator and
the databases are all on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LAMBDA_UID, LAMBDA_GID = 993, 990
"""The user and group Lambda runs a function's process as (``sbx_user1051``): never root."""

_NAMESPACE_SCRIPT = f"""
set -eu
root=$1 tmp=$2 efs=$3
shift 3
mount --bind "$tmp" "$root/tmp"
if [ -n "$efs" ]; then mount --bind "$efs" "$root/mnt"; fi
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind /etc/hosts "$root/etc/hosts"
exec chroot --userspec={LAMBDA_UID}:{LAMBDA_GID} --groups={LAMBDA_GID} "$root" "$@"
"""


class ImageUnavailableError(RuntimeError):
    """The image cannot be run here: one sentence on why."""


@dataclass(frozen=True)
class MountedImage:
    """An image's root file system (read-only) and the configuration its Dockerfile gave it."""

    name: str
    root: Path
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    workdir: str
    env: dict[str, str]

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run one program of the image (not its entry point) as Lambda's user, with the image's environment."""
        return subprocess.run(
            ["chroot", f"--userspec={LAMBDA_UID}:{LAMBDA_GID}", f"--groups={LAMBDA_GID}", str(self.root),
             "/usr/bin/env", "-i", "-C", self.workdir, *_assignments({**self.env, **(env or {})}), *argv],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip


def podman() -> str:
    """podman's path; ImageUnavailableError when it is missing or this process cannot mount images."""
    path = shutil.which("podman")
    if path is None:
        raise ImageUnavailableError("podman is not installed (`make image` installs it and builds the image)")
    if os.geteuid() != 0:
        raise ImageUnavailableError("running the image needs root (podman image mount, mount namespaces, chroot)")
    for tool in ("unshare", "chroot"):
        if shutil.which(tool) is None:
            raise ImageUnavailableError(f"{tool} is not installed (util-linux, coreutils)")
    return path


@contextmanager
def mounted(name: str) -> Iterator[MountedImage]:
    """``name`` mounted read-only, with its configuration; unmounted afterwards."""
    tool = podman()
    inspected = subprocess.run([tool, "image", "inspect", name], capture_output=True, text=True, check=False)
    if inspected.returncode != 0:
        raise ImageUnavailableError(f"image {name} is not built here (`make image` builds it)")
    config = json.loads(inspected.stdout)[0]["Config"]
    root = subprocess.run([tool, "image", "mount", name], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield MountedImage(
            name=name,
            root=Path(root),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            command=tuple(config.get("Cmd") or ()),
            workdir=config.get("WorkingDir") or "/",
            env=dict(item.split("=", 1) for item in config.get("Env") or ()),
        )
    finally:
        subprocess.run([tool, "image", "unmount", name], capture_output=True, check=False)


def _assignments(env: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in env.items()]


@contextmanager
def function_process(
    image: MountedImage,
    *,
    command: tuple[str, ...],
    env: dict[str, str],
    tmp: Path,
    efs: Path | None,
    log: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """The image's entry point with ``command`` (the function's ImageConfig.Command), as a running process.

    ``env`` is everything Lambda would set (its own variables and the function's); the image's
    ``ENV`` is under it. Its stdout and stderr (CloudWatch Logs, in AWS) go to ``log``. Stopped on exit.
    """
    tmp.chmod(0o1777)
    variables = {**image.env, **env}
    argv = [
        "unshare", "--mount", "--propagation", "private", "--",
        "/bin/sh", "-c", _NAMESPACE_SCRIPT, "sh", str(image.root), str(tmp), str(efs or ""),
        "/usr/bin/env", "-i", "-C", image.workdir, *_assignments(variables), *image.entrypoint, *command,
    ]  # fmt: skip
    with log.open("ab") as output:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
