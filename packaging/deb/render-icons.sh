#!/usr/bin/env bash
# Renders the PNG icons from the SVG (run after editing the SVG; the PNGs are committed so the
# build needs no SVG renderer). Needs librsvg2-bin.
set -euo pipefail
cd "$(dirname "$0")"
for s in 48 128 256; do
  mkdir -p icons/${s}x${s}
  rsvg-convert -w $s -h $s io.github.minigptdesk.MiniGPTDesk.svg -o icons/${s}x${s}/io.github.minigptdesk.MiniGPTDesk.png
done
