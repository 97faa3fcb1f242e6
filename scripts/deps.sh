#!/bin/sh
# Installs the Debian packages vlp needs, when run as root (or with
# passwordless sudo); otherwise prints the exact apt-get line to run.
#   scripts/deps.sh          what building and `make test` need
#   scripts/deps.sh --ref    also PyTorch, to regenerate tests/ref and run the bench peers
#   scripts/deps.sh --data   also npm (when no npm is on PATH), to fetch the demo data
#   scripts/deps.sh --fuzz   also clang and its libFuzzer runtime, for make fuzz
#   scripts/deps.sh --arm64  also the arm64 cross compiler, arm64 libraries and qemu-user, for make test-arm64
#   scripts/deps.sh --qemu   also qemu-user, for make test-cpus
set -eu
ARM64=

PKGS="build-essential pkg-config libopenblas-openmp-dev libcmocka-dev libjansson-dev libpng-dev libpcre2-dev libutf8proc-dev zlib1g-dev libxxhash-dev libjpeg-dev libwebp-dev libgif-dev libtiff-dev libstb-dev libopenmpi-dev openmpi-bin python3-numpy python3-pytest python3-pil"
for arg in "$@"; do
    case "$arg" in
        --ref) PKGS="$PKGS python3-torch python3-numpy python3-regex python3-pil python3-torchvision libtiff-tools" ;;
        --fuzz) PKGS="$PKGS clang libclang-rt-dev" ;;
        --qemu) PKGS="$PKGS qemu-user" ;;
        # Debian's multiarch: the same libraries for arm64 beside the host's
        --arm64) ARM64=1
                 PKGS="$PKGS gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libgomp1:arm64 libopenblas-openmp-dev:arm64 libcmocka-dev:arm64 libjansson-dev:arm64 libpng-dev:arm64 libjpeg-dev:arm64 libwebp-dev:arm64 libgif-dev:arm64 libtiff-dev:arm64 libstb-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 zlib1g-dev:arm64 libxxhash-dev:arm64" ;;
        # a nodejs from elsewhere may bring its own npm; Debian's npm would conflict
        --data) command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm" ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "deps.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PKGS; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

line="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"
else
    echo "deps.sh: missing Debian packages:$missing" >&2
    echo "deps.sh: run as root:  ${ARM64:+dpkg --add-architecture arm64 && }apt-get update && $line" >&2
    exit 1
fi
echo "deps.sh: installing$missing"
if [ -n "${ARM64:-}" ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive $line
