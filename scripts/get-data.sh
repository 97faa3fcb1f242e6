#!/bin/sh
# Fetches the emoji corpus once: the npm packages emoji-datasource-<vendor>
# (pinned version, MIT), verified against pinned SHA-256 sums, cached under
# data/cache/, unpacked to data/emoji/{emoji.json,img/<vendor>/64/*.png}.
# Running it again does nothing when everything is in place.
#   scripts/get-data.sh [DEST]        (default DEST: data/emoji)
set -eu
VERSION=16.0.0
DEST=${1:-data/emoji}
CACHE=${VLP_DATA_CACHE:-data/cache}
case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; esac

sum_for() { # the SHA-256 of emoji-datasource-$1-$VERSION.tgz
    case "$1" in
        google)   echo fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438 ;;
        apple)    echo b34d1665e136f163b0d4433318df151895b785186e8c729b2211b43017945075 ;;
        facebook) echo 017038cf5a4e7fcf03dd9133cbed43d4c281c4b3ce7b927c7160261b92b8821e ;;
        twitter)  echo f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877 ;;
    esac
}

mkdir -p "$CACHE" "$DEST"
for vendor in google apple facebook twitter; do
    stamp="$DEST/.complete-$vendor-$VERSION"
    [ -f "$stamp" ] && continue
    tgz="$CACHE/emoji-datasource-$vendor-$VERSION.tgz"
    want=$(sum_for "$vendor")
    if [ ! -f "$tgz" ] || [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$want" ]; then
        command -v npm >/dev/null 2>&1 || {
            echo "get-data: npm is needed to fetch $vendor (scripts/deps.sh --data installs it)" >&2
            exit 1; }
        echo "get-data: fetching emoji-datasource-$vendor@$VERSION"
        rm -f "$tgz"
        (cd "$CACHE" && npm pack --silent "emoji-datasource-$vendor@$VERSION" >/dev/null)
        got=$(sha256sum "$tgz" | cut -d' ' -f1)
        if [ "$got" != "$want" ]; then
            echo "get-data: $tgz has SHA-256 $got, expected $want; removed it" >&2
            rm -f "$tgz"
            exit 1
        fi
    fi
    echo "get-data: unpacking $vendor 64x64 images"
    tmp="$DEST/.unpack-$vendor"
    rm -rf "$tmp" && mkdir -p "$tmp"
    tar -xzf "$tgz" -C "$tmp" package/emoji.json "package/img/$vendor/64"
    mkdir -p "$DEST/img"
    rm -rf "$DEST/img/$vendor"
    mv "$tmp/package/img/$vendor" "$DEST/img/$vendor"
    # every package carries the same emoji.json, with has_img_<vendor> for all vendors
    [ -f "$DEST/emoji.json" ] || mv "$tmp/package/emoji.json" "$DEST/emoji.json"
    rm -rf "$tmp"
    n=$(ls "$DEST/img/$vendor/64" | wc -l)
    echo "get-data: $vendor: $n images"
    touch "$stamp"
done
echo "get-data: emoji corpus ready in $DEST"
