#!/usr/bin/env bash
# Measures what a cold build costs on this machine: wall time, peak memory (of the largest
# process, from GNU time) and the size of the target directory, for `cargo build` into a fresh
# target directory that is removed afterwards. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
if [[ -x /usr/bin/time ]]; then
    CARGO_TARGET_DIR="$target" /usr/bin/time -f 'wall %e s, peak RSS %M KiB (largest process)' \
        cargo build --locked --quiet
else
    start=$(date +%s)
    CARGO_TARGET_DIR="$target" cargo build --locked --quiet
    echo "wall $(( $(date +%s) - start )) s (install GNU time for the peak memory)"
fi
echo "target dir: $(du -sh "$target" | cut -f1), on $(nproc) cores"
