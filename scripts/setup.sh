#!/usr/bin/env bash
# Sets up everything this project needs on a fresh Debian machine (run as root, Python 3.11):
# Java for Spark, optionally ZooKeeper for the tests, a virtualenv in .venv with the package.
# Safe to run again: each step is skipped when already done.
#   scripts/setup.sh            the demo's needs
#   scripts/setup.sh --tests    plus ZooKeeper, Debian's chromium (the browser tests) and the test tools
#   scripts/setup.sh --bench    plus wrk, for the benchmarks in bench/ (implies --tests)
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=false
want_bench=false
[[ "${1:-}" == "--tests" ]] && want_tests=true
[[ "${1:-}" == "--bench" ]] && want_tests=true && want_bench=true

say() { echo "[setup] $*"; }

apt_packages=()
command -v java >/dev/null 2>&1 || apt_packages+=(default-jre-headless)
if $want_tests && [[ ! -e /usr/share/java/zookeeper.jar ]]; then apt_packages+=(zookeeper); fi
# sparkmagic, one of the third-party clients the tests run in a venv of their own, builds pykerberos against it,
# and so does the kerberos package (the kerberos extra: ZooKeeper's SASL GSSAPI through pure-sasl)
if $want_tests && ! dpkg -s libkrb5-dev >/dev/null 2>&1; then apt_packages+=(libkrb5-dev); fi
# the sign-in tests' real KDC (k5test drives krb5-kdc and kadmin.local) and real directory (slapd)
for package in krb5-kdc krb5-admin-server krb5-user slapd ldap-utils; do
  if $want_tests && ! dpkg -s "$package" >/dev/null 2>&1; then apt_packages+=("$package"); fi
done
# Playwright drives Debian's chromium: its own browser download cannot work on a host without internet access.
if $want_tests && ! command -v chromium >/dev/null 2>&1; then apt_packages+=(chromium); fi
if $want_bench && ! command -v wrk >/dev/null 2>&1; then apt_packages+=(wrk); fi
if ((${#apt_packages[@]})); then
  say "installing Debian packages: ${apt_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
clients_pid=""
if $want_tests; then
  # The third-party clients' own virtualenv (tests/client_venv.py), made beside the .venv install below
  say "making the Livy clients' virtualenv for the tests in the background (tests/.client-venvs)"
  "$python" tests/client_venv.py >.venv-clients.log 2>&1 &
  clients_pid=$!
fi
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $python"
  "$python" -m venv .venv
fi

extras="spark"
$want_tests && extras="spark,test"
$want_bench && extras="spark,test,bench"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$extras"
if [[ ! -e "$stamp" ]]; then
  say "installing the package and its dependencies ($extras); the first time takes about 3 minutes"
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/pip install -q -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import airflow_provider_livy, pyspark, kazoo" # fails loudly if the install did not work
  touch "$stamp"
fi
# The tests run Spark's driver JVM with a class-data archive of Spark's classes (tests/spark_jvm.py)
$want_tests && .venv/bin/python -m tests.spark_jvm
if [[ -n "$clients_pid" ]] && ! wait "$clients_pid"; then
  cat .venv-clients.log >&2
  say "could not make the Livy clients' virtualenv (above)"
  exit 1
fi
[[ -n "$clients_pid" ]] && cat .venv-clients.log && rm -f .venv-clients.log
say "ready: $(.venv/bin/python --version), $(java -version 2>&1 | head -1)"
