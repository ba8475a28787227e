#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the
# console's browser test (e2e/tests/console.rs): /usr/bin/chromium and
# /usr/bin/chromedriver. Idempotent: does nothing when both are there.
# Installing needs root (or sudo) and the Debian mirrors.
set -euo pipefail

INFRA_TAG=chromium
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi

as_root=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "chromium and chromium-driver are missing and this needs root (or sudo) to install them"
    as_root=(sudo)
fi
log "installing chromium and chromium-driver (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# One installer at a time: apt-get waits for the dpkg lock rather than failing.
"${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
"${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium chromium-driver
[[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || die "installed, but /usr/bin/chromium or /usr/bin/chromedriver is missing"
log "$(/usr/bin/chromium --version) / $(/usr/bin/chromedriver --version)"
