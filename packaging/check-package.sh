#!/usr/bin/env bash
# Builds the .deb and checks it as a user's machine would see it: desktop-file-validate,
# appstreamcli, lintian (no errors), install with apt-get, the installed minigpt-cli answers
# about an installed example, the installed window starts under Xvfb, purge leaves nothing
# in /usr. Needs root (or sudo) for apt-get; run after packaging/run-tests.sh (same build).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
BUILD=${BUILD_DIR:-build}
need=(lintian appstream desktop-file-utils dpkg-dev xvfb xauth file)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake --build "$BUILD" --target package
DEB=$(ls -t "$BUILD"/minigpt-desk_*_amd64.deb | head -1)
echo "== package: $DEB ($(du -h "$DEB" | cut -f1))"

echo "== desktop-file-validate / appstreamcli"
desktop-file-validate packaging/deb/io.github.minigptdesk.MiniGPTDesk.desktop
appstreamcli validate --no-net packaging/deb/io.github.minigptdesk.MiniGPTDesk.metainfo.xml

echo "== lintian"
LINT=$(lintian --allow-root "$DEB" 2>&1 || true)
echo "${LINT:-(no tags)}"
if echo "$LINT" | grep -q '^E:'; then
  echo "FAIL: lintian reports errors" >&2
  exit 1
fi

echo "== install"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$DEB"
FILES=$(dpkg -L minigpt-desk)
HOMEDIR=$(mktemp -d)
trap 'rm -rf "$HOMEDIR"' EXIT

echo "== installed minigpt-cli"
/usr/bin/minigpt-cli --version
# The first example's question, and the answer its scene holds (examples.json, written by the
# trainer from the generator's truth).
EXAMPLES=/usr/share/minigpt-desk/demo-model/examples/examples.json
QUESTION=$(grep -m1 '"question"' "$EXAMPLES" | sed 's/.*"question": "\(.*\)".*/\1/')
EXPECTED=$(grep -m1 '"answer"' "$EXAMPLES" | sed 's/.*"answer": "\(.*\)".*/\1/')
ANSWER=$(HOME="$HOMEDIR" XDG_CACHE_HOME="$HOMEDIR/.cache" /usr/bin/minigpt-cli ask --greedy \
  --image /usr/share/minigpt-desk/demo-model/examples/example1.png "$QUESTION")
echo "question: $QUESTION"
echo "answer: $ANSWER (expected: $EXPECTED)"
if [ -z "$EXPECTED" ] || [ "$ANSWER" != "$EXPECTED" ]; then
  echo "FAIL: unexpected answer from the installed demo model" >&2; exit 1
fi

echo "== installed minigpt-desk under Xvfb"
# It must still be running after a few seconds (model loaded, window up), then quit on TERM.
HOME="$HOMEDIR" XDG_CACHE_HOME="$HOMEDIR/.cache" xvfb-run -a -s "-screen 0 1280x800x24" \
  bash -c '/usr/bin/minigpt-desk /usr/share/minigpt-desk/demo-model/examples/example2.png & pid=$!;
           sleep 6; kill -0 $pid || exit 1; kill $pid; wait $pid || true'
echo "window ran"

echo "== purge"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q minigpt-desk
left=0
while IFS= read -r f; do
  case "$f" in
    /usr/share/minigpt-desk*|/usr/share/doc/minigpt-desk*|/usr/bin/minigpt-*|*MiniGPTDesk*|*/minigpt-*.1.gz)
      if [ -e "$f" ]; then echo "left behind: $f"; left=1; fi ;;
  esac
done <<< "$FILES"
if [ $left != 0 ]; then echo "FAIL: purge left files" >&2; exit 1; fi
echo "PACKAGE CHECK PASSED"
