#!/usr/bin/env bash
# Headless Chromium for the HTML report's browser test (Debian's package). Does nothing when it is there.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium
