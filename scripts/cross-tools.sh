#!/usr/bin/env bash
# Install what `make aarch64-check` needs, from Debian's packages: the AArch64 cross
# compiler and qemu's user-mode emulator. Needs root (CI machines run as root).
set -euo pipefail
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make aarch64-check needs g++-aarch64-linux-gnu and qemu-user:" \
        "sudo apt-get install g++-aarch64-linux-gnu qemu-user" >&2
    exit 1
fi
echo "installing g++-aarch64-linux-gnu and qemu-user (Debian) for the AArch64 check"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    g++-aarch64-linux-gnu qemu-user > /dev/null
