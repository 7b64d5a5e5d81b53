#!/usr/bin/env bash
# with-chromium.sh: run a command with a headless-capable Chromium on PATH,
# for the live stream's real-browser test (cmd/relay TestLiveBrowser).
#
#   scripts/with-chromium.sh CMD [ARG...]
#
# Uses $CHROMIUM, chromium, chromium-browser or google-chrome when one is
# installed. Otherwise, running as root with apt-get, it installs Debian's
# chromium package; else it says how to install one and runs CMD anyway
# (the browser test then fails, naming what is missing).
set -euo pipefail

have_chromium() {
  [[ -n "${CHROMIUM:-}" ]] && command -v "$CHROMIUM" >/dev/null 2>&1 && return 0
  local name
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$name" >/dev/null 2>&1 && return 0
  done
  return 1
}

if ! have_chromium; then
  if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
    echo "with-chromium: installing Debian's chromium package for the browser test" >&2
    (
      flock 9
      have_chromium || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
      }
    ) 9>/tmp/relay-chromium-install.lock >/dev/null
  else
    echo "with-chromium: no Chromium found; install one (apt-get install chromium) or set CHROMIUM, or the browser test fails" >&2
  fi
fi
exec "$@"
