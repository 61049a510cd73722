#!/usr/bin/env bash
# Builds the local Debian base image the container tests use, because this Docker engine cannot pull
# from any registry: `debootstrap --variant=minbase` + `docker import`, trimmed hard.
#
#   tests/support/local-base-image.sh            # builds mlops-local/debian:bookworm unless it exists
#   LOCAL_BASE_IMAGE=name:tag SUITE=bookworm MIRROR=http://deb.debian.org/debian tests/support/local-base-image.sh
#
# Idempotent: if `docker image inspect` finds the image, it does nothing. The trimmed root file system
# is kept under $MLOPS_CACHE/local-base-image/ (never in the repo), so a removed image is re-imported
# in seconds without running debootstrap again. Needs root (or password-less sudo) and debootstrap.
#
# The image holds what the inference binary and libonnxruntime need at run time (libc6, libstdc++6,
# libgcc-s1 are all part of minbase because apt depends on them) plus a POSIX shell, so it can also
# stand in as the build stage's image when the Dockerfile is built with PREBUILT=1.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"

IMAGE=${LOCAL_BASE_IMAGE:-mlops-local/debian:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$MLOPS_CACHE/local-base-image
ROOTFS=$WORK/$SUITE-rootfs
STAMP=$ROOTFS.complete

log() { echo "local-base-image: $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present; nothing to do"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo"; else
    log "needs root (or password-less sudo) for debootstrap"; exit 1
  fi
fi
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || {
  log "debootstrap is not installed (scripts/setup.sh installs it)"; exit 1; }

mkdir -p "$WORK"
# Two test runs may start at once: the second waits, then finds the image.
exec 9>"$WORK/.lock"
flock 9
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE was built by a concurrent run"
  exit 0
fi

start=$(date +%s)

if [ ! -f "$STAMP" ]; then
  tmp=$ROOTFS.tmp
  # A mount left behind by an interrupted debootstrap must not be deleted through.
  if findmnt -rn -o TARGET | grep -q "^$tmp/"; then
    log "something is still mounted under $tmp; unmount it first"; exit 1
  fi
  $SUDO rm -rf "$tmp" "$ROOTFS"
  log "debootstrap --variant=minbase $SUITE from $MIRROR"
  $SUDO /usr/sbin/debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    log "debootstrap failed; last lines of $WORK/debootstrap.log:"; tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
  if findmnt -rn -o TARGET | grep -q "^$tmp/"; then
    log "debootstrap left mounts under $tmp"; exit 1
  fi

  log "trimming"
  $SUDO sh -eu -c '
    r=$1
    # Package caches and indexes (apt-get update restores the lists when someone needs apt).
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/archives/partial/* "$r"/var/cache/apt/*.bin
    rm -rf "$r"/var/lib/apt/lists/*
    mkdir -p "$r"/var/lib/apt/lists/partial
    # Documentation (the copyright files stay), manuals, translations.
    find "$r"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    find "$r"/usr/share/doc -mindepth 1 -type d -empty -delete
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/usr/share/linda
    find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    # C.utf8 (from libc-bin) stays: LANG=C.UTF-8 needs it.
    rm -rf "$r"/usr/share/i18n
    find "$r"/usr/lib/locale -mindepth 1 -maxdepth 1 ! -name C.utf8 -exec rm -rf {} +
    # Logs and backups of the bootstrap, and host files debootstrap copied in (Docker provides its own).
    rm -rf "$r"/var/log/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/debootstrap
    rm -f "$r"/etc/resolv.conf "$r"/etc/hostname "$r"/etc/machine-id
    # Device nodes: Docker mounts its own /dev; /proc, /sys, /tmp start empty.
    rm -rf "$r"/dev/* "$r"/proc/* "$r"/sys/* "$r"/tmp/* "$r"/var/tmp/*
    # Keep later package installs as small (same rules as the official -slim images).
    mkdir -p "$r"/etc/dpkg/dpkg.cfg.d "$r"/etc/apt/apt.conf.d
    cat >"$r"/etc/dpkg/dpkg.cfg.d/docker-slim <<EOF
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    cat >"$r"/etc/apt/apt.conf.d/docker-clean <<EOF
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Install-Recommends "false";
EOF
  ' sh "$tmp"
  $SUDO mv "$tmp" "$ROOTFS"
  touch "$STAMP"
else
  log "re-using the trimmed root file system in $ROOTFS"
fi

log "docker import -> $IMAGE"
$SUDO tar --numeric-owner --xattrs -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase, trimmed; local stand-in for debian:$SUITE-slim\"" \
  --message "debootstrap --variant=minbase $SUITE" \
  - "$IMAGE" >/dev/null

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(( $(date +%s) - start )) s, size $(( size / 1000 / 1000 )) MB ($size bytes)"
