#!/usr/bin/env bash
# bench-zfs-vm.sh: the zfs snapshotter against overlay, measured with
# pvecri-bench inside the VM stage's node (scripts/node-vm.sh), where a
# real ZFS pool exists. Rounds alternate overlay, zfs, zfs, overlay
# (ABBA) so drift in the emulated CPU hits both alike; each round starts
# a fresh daemon on its own state dir.
#
#   scripts/bench-zfs-vm.sh [ITERATIONS]     (default 15 per round)
#
# The VM runs under software emulation, so absolute times are several
# times a real node's; the ratio between the backends is the result.
# Needs the fixture registry (scripts/registry.sh start).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
iterations=${1:-15}

cargo build --locked --quiet --bin pvecri --bin pvecri-helper --bin pvecri-bench
scripts/build-init.sh >/dev/null
repo=$PWD
bench=$repo/target/debug/pvecri-bench
bin=$repo/target/debug/pvecri
init=$repo/target/x86_64-unknown-linux-gnu/release/pvecri-init

scripts/node-vm.sh run "
set -e
modprobe zfs
truncate -s 2G /var/tmp/pool.img
zpool create -f -O mountpoint=none bench /var/tmp/pool.img
round() {
    kind=\$1 dir=/var/tmp/bench-\$2
    mkdir -p \$dir
    {
        echo 'socket = \"'\$dir'/pvecri.sock\"'
        echo 'state_dir = \"'\$dir'/state\"'
        echo 'runtime_dir = \"'\$dir'/run\"'
        echo 'init_path = \"$init\"'
        echo 'log_level = \"warn\"'
        sed -e \"s/^\\[images\\]/[images]\\nsnapshotter = \\\"\$kind\\\"\\nzfs_dataset = \\\"bench\\/\$2\\\"/\" tests/critest/pvecri.toml
    } > \$dir/config.toml
    $bin daemon --config \$dir/config.toml > \$dir/daemon.log 2>&1 &
    pid=\$!
    for i in \$(seq 100); do [ -S \$dir/pvecri.sock ] && break; sleep 0.2; done
    $bench --endpoint \$dir/pvecri.sock --iterations $iterations --label \"\$kind round \$2\"
    kill \$pid; wait \$pid || true
}
round overlay 1
round zfs 2
round zfs 3
round overlay 4
"
