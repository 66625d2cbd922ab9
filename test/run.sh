#!/usr/bin/env bash
# `npm test`: type-check, then run every unit and integration test with
# Node's own runner. Integration tests need etcd 3.4+ and etcdctl; when they
# are missing this script installs Debian's packages if it can, or says how.
set -euo pipefail
cd "$(dirname "$0")/.."

# openssl makes the TLS tests' certificates and JWT keys; curl drives the JSON gateway over HTTP/2.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test/run.sh: etcd, openssl or curl not found; installing Debian's etcd-server, etcd-client, openssl and curl" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client openssl curl >/dev/null
  else
    echo "test/run.sh: etcd, etcdctl, openssl or curl is missing: run 'sudo apt-get install -y etcd-server etcd-client openssl curl' (or put etcd 3.4+ on PATH), then npm test again" >&2
    exit 1
  fi
fi

npx --no-install tsc -p tsconfig.json --noEmit

# `npm test -- test/unit` runs one folder (or file); the default is all of them.
roots=("$@")
[ ${#roots[@]} -eq 0 ] && roots=(test/unit test/integration)
mapfile -t files < <(find "${roots[@]}" -name '*.test.ts' | sort)
# Integration tests each start their own etcd on free ports; two files at a
# time keeps both cores busy without starving etcd's heartbeats.
# A test that hangs fails after five minutes instead of holding CI to its limit.
status=0
node --import tsx --test --test-concurrency=2 --test-timeout=300000 "${files[@]}" || status=$?

# The files marked "Workers pass" use the proxy only through its port: they run
# a second time against the CLI with --workers 2 (several serving processes over one mirror).
mapfile -t workerFiles < <(grep -l '^// Workers pass:' "${files[@]}" || true)
if [ ${#workerFiles[@]} -gt 0 ]; then
  echo "test/run.sh: ${#workerFiles[@]} files again with --workers 2" >&2
  ECP_TEST_WORKERS=2 node --import tsx --test --test-concurrency=2 --test-timeout=300000 "${workerFiles[@]}" || status=$?
fi

# The files marked "etcd 3.5 pass" compare the proxy's answers with etcd's: they run a third time
# against etcd 3.5 (Debian trixie's, fetched into a cache by test/support/fetch-etcd.sh), with the proxy
# in front of it. Without the network that pass is skipped with a line saying so; on CI it must run.
mapfile -t etcd35Files < <(grep -l '^// etcd 3.5 pass:' "${files[@]}" || true)
etcd35=""
if [ ${#etcd35Files[@]} -gt 0 ]; then
  fetchLog=$(mktemp)
  if etcd35=$(bash test/support/fetch-etcd.sh 2>"$fetchLog"); then
    echo "test/run.sh: ${#etcd35Files[@]} files again against etcd 3.5 ($etcd35)" >&2
    ETCD_BIN_DIR="$etcd35" node --import tsx --test --test-concurrency=2 --test-timeout=300000 "${etcd35Files[@]}" || status=$?
  elif [ "${CI:-}" = true ]; then
    etcd35=""
    echo "test/run.sh: CI must run the etcd 3.5 pass, and etcd 3.5 could not be fetched: $(tail -n 1 "$fetchLog")" >&2
    status=1
  else
    etcd35=""
    echo "test/run.sh: the etcd 3.5 pass is skipped (no network?): $(tail -n 1 "$fetchLog")" >&2
  fi
  rm -f "$fetchLog"
fi

# The robustness smoke run (test/robustness/): a 3-member etcd, three proxies, traffic and faults for about
# 30 s, then the checker over the whole history; against etcd 3.4, and with auth on against 3.5 when the pass
# above had it. Alone,
# after the rest: it loads both cores by itself.
if [ $# -eq 0 ]; then
  node --import tsx --test --test-timeout=300000 test/robustness/smoke.test.ts || status=$?
  if [ -n "$etcd35" ]; then
    echo "test/run.sh: the robustness smoke run again against etcd 3.5, with etcd's auth on" >&2
    ETCD_BIN_DIR="$etcd35" ECP_ROBUSTNESS_AUTH=1 node --import tsx --test --test-timeout=300000 test/robustness/smoke.test.ts || status=$?
  fi
fi
exit "$status"
