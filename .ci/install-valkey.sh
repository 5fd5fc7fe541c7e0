#!/bin/sh
# Installs Debian's valkey-server for the breaker tests: from the distribution when it
# has it (Debian 13), else from bookworm-backports (Debian 12).
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq valkey-server >/dev/null 2>&1; then
    . /etc/os-release
    echo "deb http://deb.debian.org/debian ${VERSION_CODENAME}-backports main" \
        > /etc/apt/sources.list.d/backstop-backports.list
    apt-get update -qq
    apt-get install -y -qq -t "${VERSION_CODENAME}-backports" valkey-server >/dev/null
fi
# The package starts a service on 6379; the tests start their own servers.
systemctl stop valkey-server >/dev/null 2>&1 || true
