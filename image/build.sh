#!/usr/bin/env bash
# `make image`: builds functions/Dockerfile, unchanged, into the runner image with podman, on a machine
# with no Docker engine and no container registry (Debian 12 or later, as root).
#
#   image/build.sh [IMAGE]        IMAGE defaults to localhost/backstop-runner:local
#   PG_MAJOR=18 image/build.sh    passed on as --build-arg PG_MAJOR (needs PGDG=yes, see the Dockerfile)
#
# The Dockerfile's base, debian:trixie-slim, is made here from Debian's own packages (debootstrap from
# the mirror this machine's apt already uses, slimmed as Docker Hub's -slim images are) and imported
# under that name, so the Dockerfile's FROM resolves locally with `--pull=never`. The bootstrapped tree
# is cached as .local/image/debian-trixie-slim.tar (git-ignored; `make clean` or deleting it makes a
# fresh one); podman keeps the imported base and the build's layers between runs. Inside the build,
# apt reaches the base's mirror and pip the package index as this machine's pip does (its index and
# certificate bundle, read here at run time and mounted for the build only, never stored).
set -euo pipefail

IMAGE=${1:-localhost/backstop-runner:local}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/.local/image
BASE=debian:trixie-slim  # podman keeps it as localhost/debian:trixie-slim; the Dockerfile's FROM finds it
SUITE=trixie
# The official image's configuration (what `docker pull debian:trixie-slim` gives): a tar import has none.
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root: debootstrap, podman's chroot isolation and 'podman image mount' need it."

install_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        say "installing ${missing[*]} (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The Debian mirror apt uses here: the URIs of the stanza (deb822) or line (one-line format) that
# carries the machine's own suite, not its -security or -updates suites.
debian_mirror() {
    local codename uri=""
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    shopt -s nullglob
    local sources=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    shopt -u nullglob
    if ((${#sources[@]})); then
        uri=$(awk -v suite="$codename" '
            function flush() { if (found && uris != "" && !done) { print uris; done = 1 } found = 0; uris = "" }
            /^[[:space:]]*$/ { flush(); next }
            tolower($1) == "uris:" { uris = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
            END { flush() }' "${sources[@]}")
    fi
    if [[ -z $uri ]] && ((${#lists[@]})); then
        uri=$(awk -v suite="$codename" '
            $1 == "deb" { n = 2; if ($2 ~ /^\[/) { while (n <= NF && $n !~ /\]$/) n++; n++ }
                          if ($(n + 1) == suite) { print $n; exit } }' "${lists[@]}" 2>/dev/null || true)
    fi
    [[ -n $uri ]] || die "no Debian mirror found for suite '$codename' in /etc/apt/sources.list{,.d/}: configure apt first."
    echo "$uri"
}

# What makes Docker Hub's -slim variant slim (debuerreotype's slimify): no documentation, manuals or
# translations, now or from packages installed later, except each package's copyright file.
slim() {
    local rootfs=$1 dir
    {
        for dir in doc groff info linda lintian/overrides locale man; do echo "path-exclude /usr/share/$dir/*"; done
        echo "path-include /usr/share/doc/*/copyright"
    } >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    for dir in groff info linda lintian/overrides locale man; do
        rm -rf "${rootfs:?}/usr/share/$dir"/*
    done
}

make_base() {
    if podman image exists "$BASE"; then
        return
    fi
    local tarball=$CACHE/debian-$SUITE-slim.tar
    if [[ ! -s $tarball ]]; then
        local mirror rootfs
        mirror=$(debian_mirror)
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        started=$SECONDS
        say "bootstrapping Debian $SUITE (minbase) from the machine's mirror into $rootfs"
        debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
        slim "$rootfs"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        say "bootstrapped in $((SECONDS - started)) s"
    fi
    say "importing $tarball as $BASE"
    podman import --quiet --change "ENV PATH=$BASE_PATH" --change 'CMD ["bash"]' "$tarball" "$BASE" >/dev/null
}

# pip inside the build: this machine's index (when it sets one) and certificate bundle, as a pip.conf
# mounted for the build only (it is not part of any layer).
pip_mounts() {
    local pip=(python3 -m pip) index cert
    index=${PIP_INDEX_URL:-$("${pip[@]}" config get global.index-url 2>/dev/null || true)}
    cert=${PIP_CERT:-$("${pip[@]}" config get global.cert 2>/dev/null || true)}
    cert=${cert:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    {
        echo "[global]"
        [[ -n $index ]] && echo "index-url = $index"
        [[ -f $cert ]] && echo "cert = /run/backstop-build/ca-certificates.crt"
        echo "disable-pip-version-check = true"
    } >"$CACHE/pip.conf"
    echo "--volume=$CACHE/pip.conf:/etc/pip.conf:ro"
    [[ -f $cert ]] && echo "--volume=$cert:/run/backstop-build/ca-certificates.crt:ro"
    return 0
}

mkdir -p "$CACHE"
install_tools
make_base

build_args=()
[[ -n ${PG_MAJOR:-} ]] && build_args+=(--build-arg "PG_MAJOR=$PG_MAJOR")
[[ -n ${PGDG:-} ]] && build_args+=(--build-arg "PGDG=$PGDG")
mapfile -t mounts < <(pip_mounts)

say "building $IMAGE from functions/Dockerfile (log: $CACHE/build.log)"
started=$SECONDS
# chroot isolation: the default OCI runtime cannot run here (no cgroups it accepts); host network:
# the build reaches the mirror and the index as this machine does.
if ! podman build --pull=never --isolation=chroot --network=host --layers \
    "${mounts[@]}" "${build_args[@]}" --iidfile "$CACHE/image.id" \
    --tag "$IMAGE" --file "$ROOT/functions/Dockerfile" "$ROOT/functions" >"$CACHE/build.log" 2>&1; then
    tail -n 40 "$CACHE/build.log" >&2
    die "podman build failed (log: $CACHE/build.log)"
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE ($(cut -c1-19 "$CACHE/image.id")) in $((SECONDS - started)) s: $((size / 1000000)) MB"
