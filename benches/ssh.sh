#!/usr/bin/env bash
# Runs the SSH benchmark (hgauto-ssh/benches/ssh_vs_peers.rs) with its peer tools:
# OpenSSH (ssh, scp, ControlMaster), rsync, and parallel-ssh in a project-local venv.
#   ./benches/ssh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in rsync openssh-server openssh-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  apt-get update -qq
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ "$(id -u)" -eq 0 ]; then
  id hgauto-test >/dev/null 2>&1 || useradd --create-home --shell /bin/sh hgauto-test
  [ "$(getent shadow hgauto-test | cut -d: -f2)" = "*" ] || usermod -p '*' hgauto-test
fi
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c 'import pssh' 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q parallel-ssh
fi
HGAUTO_BENCH_PYTHON="$PWD/.venv-bench/bin/python" cargo bench -p hgauto-ssh --bench ssh_vs_peers
