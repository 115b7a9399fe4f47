#!/usr/bin/env bash
# Installs the Debian 12 packages referrald needs to build, test and run.
# The one list of dependencies: the README commands and CI all come here.
#
# Usage: scripts/install-deps.sh [--always]
#   Installs only when something is missing, unless --always (CI) is given.
#   As an ordinary user with something missing, prints the command to run.
set -euo pipefail

PACKAGES=(
	build-essential cmake pkg-config
	libevent-dev            # event loop, bufferevents, evhttp, OpenSSL bufferevents
	libpq-dev               # asynchronous PostgreSQL client
	libprotobuf-c-dev protobuf-c-compiler   # wire format (C)
	libssl-dev              # TLS, PBKDF2, random tokens
	openssl                 # throwaway CA and certificates in the TLS tests
	libinih-dev             # config file parsing
	libjson-c-dev           # referralctl --json
	libsystemd-dev          # sd_notify
	libcmocka-dev           # unit tests
	clang libclang-rt-14-dev  # the libFuzzer target (tests/fuzz): clang 14 and its fuzzer runtime
	postgresql-15 postgresql-client-15      # the database, and private test clusters
	python3 python3-protobuf protobuf-compiler  # interoperability and integration tests
	python3-prometheus-client  # parses /metrics in the monitoring tests
	procps psmisc           # pkill/ps in test harnesses
	systemd dpkg-dev file man-db   # packaging tests: systemd-analyze, dpkg-shlibdeps, man -l
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [[ ${1:-} != --always && ${#missing[@]} -eq 0 ]]; then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "missing packages: ${missing[*]}" >&2
	echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
