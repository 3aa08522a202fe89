#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real: RabbitMQ and PostgreSQL servers
# (started by tests/servers.py on their own ports), Dovecot, tinyproxy, dante and openssl
# (started by tests/mailservers.py), libmagic for python-magic; podman, runc and debootstrap
# to build and run the container image and the compose stack (tests/deploy), with CNI's
# dnsname plugin so that compose services find each other by name; catatonit, the init of
# the pause container that podman builds for a pod (`podman kube play`); prometheus for
# promtool, which checks the alert rules; chromium, the browser the admin page's tests drive
# with Playwright (its own browser download cannot work without the internet).
# Idempotent and silent when everything is present. Arguments name a subset to install
# (`make run` needs only libmagic1).
set -euo pipefail

if (($# > 0)); then
    packages=("$@")
else
    packages=(
        rabbitmq-server postgresql libmagic1
        dovecot-imapd dovecot-pop3d tinyproxy dante-server openssl
        podman runc debootstrap golang-github-containernetworking-plugin-dnsname catatonit
        prometheus chromium
    )
fi

missing=()
for pkg in "${packages[@]}"; do
    # dpkg -s also knows removed-but-configured packages; only "install ok installed" counts.
    if ! dpkg -s "$pkg" 2>/dev/null | grep -qx 'Status: install ok installed'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "missing system packages, install as root: apt-get install ${missing[*]}" >&2
    exit 1
fi

# Tests start their own server instances; keep apt from starting the system ones.
policy=/usr/sbin/policy-rc.d
created_policy=no
cleanup() {
    if [[ $created_policy == yes ]]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=yes
fi

echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
