#!/usr/bin/env bash
# The main job. With AWS configured (a region or profile in the environment, or ~/.aws), it
# reconciles the clusters the policies in policies/ select, in dry-run mode: it observes,
# diagnoses and plans, and writes the audit trail to standard output, with no mutating call.
# (To act, run `ecs-reconciler run` yourself, once the plan reads right.) With no AWS
# configured, it runs the demo on the built-in simulated account.
# Extra arguments go to the command, e.g. `scripts/run.sh --once`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
aws_configured() {
    [[ -n "${AWS_REGION:-}${AWS_DEFAULT_REGION:-}${AWS_PROFILE:-}${AWS_ACCESS_KEY_ID:-}" ]] ||
        [[ -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ]] ||
        [[ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]]
}
if aws_configured; then
    exec cargo run --quiet -- run --dry-run --policies policies "$@"
else
    echo "no AWS configuration found: running the demo on the simulated account" >&2
    exec cargo run --quiet -- demo "$@"
fi
