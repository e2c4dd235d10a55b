#!/usr/bin/env bash
# Builds the banhammer Python package the way a user installs it (pip install ./crates/python)
# into a venv under target/, then runs its pytest suite. Needs only PyPI and crates.io; the
# venv is reused when present. Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${BANHAMMER_PYVENV:-$root/target/pyvenv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv"
fi
# The maturin build backend runs the `maturin` binary from PATH.
export PATH="$venv/bin:$PATH"
echo "== pip install maturin pytest"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.7,<2" "pytest>=7"

echo "== pip install ./crates/python (release build)"
# No build isolation: the venv's maturin builds the wheel, so nothing else is downloaded.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps "$here"

echo "== pytest"
cd "$here"
# The installed package is under test, not the source tree; no cache files in the tree.
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q tests "$@"
