#!/usr/bin/env bash
# Keeps the shared cargo target dir ($CARGO_TARGET_DIR) from filling the disk: every clone that
# CI builds links its own copy of each test binary (~200 MB each, 60 of them), and incremental
# caches pile up beside them. Removes the incremental caches and, of each test binary, every
# copy but the newest. Cargo rebuilds whatever it still needs.
set -euo pipefail
target=${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}
[ -d "$target" ] || exit 0
for profile in debug release; do
    rm -rf "${target:?}/$profile/incremental"
    deps="$target/$profile/deps"
    [ -d "$deps" ] || continue
    # Executables without an extension are test binaries, named <name>-<hash>; newest first.
    find "$deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %f\n' \
        | sort -rn \
        | awk '{ name = $2; sub(/-[0-9a-f]+$/, "", name); if (seen[name]++) print $2 }' \
        | while read -r stale; do rm -f "$deps/$stale"; done
done
df -h "$target" | tail -1 | awk '{ print "prune-target: " $4 " free on " $6 }'
