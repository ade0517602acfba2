#!/usr/bin/env bash
# Installs Debian's chromium for the end-to-end browser test (Playwright drives it; no browser download).
# Without root or apt the browser test is skipped, with the reason shown.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium not installed and no root apt-get here: the browser test will be skipped" >&2
  exit 0
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
  || echo "chromium install failed: the browser test will be skipped" >&2
