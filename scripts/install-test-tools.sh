#!/usr/bin/env bash
# Installs what the tests need beyond the servers: Debian's chromium, which
# renders the web view headless, and chromium-driver, through which a test
# clicks the page's savepoint button (tests/web.rs). Idempotent; needs root
# (or sudo).
set -euo pipefail

command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && exit 0
echo "== installing chromium and chromium-driver"
sudo_if_needed=()
[ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
"${sudo_if_needed[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
