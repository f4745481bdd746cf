#!/usr/bin/env bash
# image-build-check.sh: the Docker image's compile step without a Docker engine. Checks that the
# Dockerfile's builder stage runs exactly BUILD_CMD below, then runs that same command here
# (reusing $CARGO_TARGET_DIR, so it is cheap when the release build is cached) and checks both
# binaries the image copies to /usr/local/bin/ exist and start.
#
# It does not check the image itself (base images, COPY paths, USER, labels): only
# `make image` on a machine with a Docker engine does; hadolint lints the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}"

BUILD_CMD="cargo build --release --locked -p highpress -p highpress-operator"

if ! grep -qF "RUN $BUILD_CMD" Dockerfile; then
    echo "image-build-check: FAIL: Dockerfile no longer runs \`$BUILD_CMD\`; update both together" >&2
    exit 1
fi
echo "image-build-check: Dockerfile runs: $BUILD_CMD"
# The build context is .dockerignore's allow-list (its `!` lines): the workspace must load from
# those files alone (a workspace member left out of it fails every cargo command in the image).
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
sed -n 's#^!\(.*[^/]\)/*$#\1#p' .dockerignore | while read -r path; do
    mkdir -p "$context/$(dirname "$path")"
    cp -R "$path" "$context/$path"
done
if ! (cd "$context" && cargo metadata --format-version 1 --no-deps --offline >/dev/null); then
    echo "image-build-check: FAIL: the workspace does not load from .dockerignore's allow-list" >&2
    exit 1
fi
echo "image-build-check: the workspace loads from .dockerignore's allow-list"
# Word splitting is wanted: BUILD_CMD is a command line.
# shellcheck disable=SC2086
$BUILD_CMD
for bin in highpress highpress-operator; do
    "$CARGO_TARGET_DIR/release/$bin" --version
done
echo "image-build-check: ok (both binaries the image ships build and start)"
