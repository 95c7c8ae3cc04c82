#!/usr/bin/env bash
# Where the CPU of one observation goes (issue 9): runs the cost bench's loopback ECS stub,
# profiles one child reconciling TASKS tasks with `perf record`, and sums the samples by who
# spends them: the AWS SDK's parsing, string work (mostly the SDK's UTF-8 checks and key
# comparisons), the allocator, the kernel, and this project's own code.
#
#   scripts/profile-cost.sh [TASKS]      # default 20000; needs perf and a release build of
#                                        # the cost bench (cargo bench --bench cost builds it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tasks="${1:-20000}"
target="${CARGO_TARGET_DIR:-target}"
bench=$(ls -t "$target"/release/deps/cost-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
if [[ -z "$bench" ]]; then
    echo "no release build of the cost bench: run cargo bench --bench cost first" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'kill "$stub" 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 1d | "$bench" --serve > "$work/addr" &
stub=$!
for _ in $(seq 50); do [[ -s "$work/addr" ]] && break; sleep 0.1; done
addr=$(head -1 "$work/addr")
perf record -q -F 2000 -o "$work/perf.data" "$bench" --child "$tasks" "$((tasks / 10))" "$addr"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
    python3 -c '
import collections, re, sys
share = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s+([0-9.]+)%\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, kind, sym = float(m.group(1)), m.group(2), m.group(3)
    if kind == "k":
        who = "kernel"
    elif "aws_smithy" in sym or "aws_sdk" in sym:
        who = "AWS SDK (parsing, dropping its types)"
    elif re.search(r"mi_|malloc|__rust_alloc|__rust_dealloc|free", sym):
        who = "allocator"
    elif "ecs_reconciler" in sym:
        who = "ecs_reconciler"
    elif re.search(r"from_utf8|memcmp|memmove|memcpy|memset|dec2flt", sym):
        who = "string work (mostly under the SDK)"
    elif re.search(r"sip|hash", sym, re.I):
        who = "hashing"
    else:
        who = "other"
    share[who] += pct
for who, pct in share.most_common():
    print(f"{pct:6.1f}%  {who}")
'
