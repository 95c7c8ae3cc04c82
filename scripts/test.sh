#!/usr/bin/env bash
# Runs the whole test suite. Sets up the moto emulator the AWS adapter tests run against and
# cfn-lint for the deploy template's tests: a Python virtualenv in .venv with moto[server] and
# cfn-lint at their pinned versions (installed only when missing or another version), then
# `cargo test --tests --benches` (the integration binary, and the benchmark run once as a
# test) with any extra arguments passed through.
set -euo pipefail

MOTO_VERSION=5.2.5
CFN_LINT_VERSION=1.58.0
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    echo "creating .venv (moto ${MOTO_VERSION})" >&2
    "$PYTHON" -m venv .venv
fi
# The installed version of a distribution in .venv, or nothing.
installed() {
    .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
}
if [[ "$(installed moto)" != "$MOTO_VERSION" ]]; then
    echo "installing moto[server]==${MOTO_VERSION} into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
fi
if [[ "$(installed cfn-lint)" != "$CFN_LINT_VERSION" ]]; then
    echo "installing cfn-lint==${CFN_LINT_VERSION} into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "cfn-lint==${CFN_LINT_VERSION}"
fi

export MOTO_PYTHON="$PWD/.venv/bin/python"
# The benchmarks once, as smoke tests (quick in test mode), then every test, so the run ends
# on the test summary. Extra arguments (e.g. --locked, or a name filter) go to both.
cargo test --benches "$@"
exec cargo test --tests "$@"
