#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and launches the app on the built-in model.
# (Until the desktop window lands this is the interactive CLI chat; extra arguments are
# passed through, e.g. --image FILE.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" --target minigpt-cli
exec "$BUILD/app/minigpt-cli" chat --stats "$@"
