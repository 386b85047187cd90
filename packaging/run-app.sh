#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and opens the desktop window (minigpt-desk) on
# the built-in model. Extra arguments go to the app, e.g. --image FILE (attached to the first
# question), --model DIR, --data-dir DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" --target minigpt-desk
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}${QT_QPA_PLATFORM:-}" ]; then
  echo "No display to open the window on. On a headless machine run it under Xvfb:" >&2
  echo "  xvfb-run -a -s '-screen 0 1280x800x24' bash packaging/run-app.sh $*" >&2
  exit 1
fi
exec "$BUILD/app/minigpt-desk" "$@"
