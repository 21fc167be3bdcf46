#!/usr/bin/env bash
# The Python client (clients/python) against the real `gantry serve`, then API fuzzing.
#
#   1. a virtual environment in target/py-venv (override: GANTRY_PY_VENV) with the client installed
#      editable and the pinned test tools (versions verified together: pytest 9.2.0, PyYAML 6.0.4,
#      schemathesis 4.32.5);
#   2. target/debug/gantry built (`cargo build -p gantry`: a no-op when it is up to date);
#   3. pytest: the client's tests against real servers (auth on and off), `from_description` against
#      `gantry template` on hundreds of sentences, the client checked against /openapi.json;
#   4. schemathesis against /openapi.json with auth on and off: no 5xx, answers as documented.
#      Reports (JUnit) under target/python-tests/schemathesis/{auth,no-auth}/.
# Needs python3 (>= 3.9) with venv, and PyPI on first run. About a minute when the binary is built.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${GANTRY_PY_VENV:-target/py-venv}
PYTHON=${PYTHON:-python3}
PINS=("pytest==9.2.0" "PyYAML==6.0.4" "schemathesis==4.32.5")

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the pins or the package description changed.
stamp="$VENV/.gantry-installed"
want="$(printf '%s\n' "${PINS[@]}"; cat clients/python/pyproject.toml)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e clients/python "${PINS[@]}"
    printf '%s' "$want" >"$stamp"
fi

cargo build --quiet -p gantry
export GANTRY_BIN="$PWD/target/debug/gantry"

# Both run; the script fails if either did.
status=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider clients/python/tests || status=1
"$VENV/bin/python" clients/python/tests/fuzz_api.py --report-dir target/python-tests/schemathesis || status=1
exit "$status"
