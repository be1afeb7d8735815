#!/usr/bin/env bash
# bench-network.sh: the network share of pod start, pvecri built-in vs pvecri
# CNI mode vs containerd + the same CNI plugins (docs/benchmarks.md).
# Needs root, release builds of pvecri and pvecri-bench, pvecri-init, the
# fixture registry, containerd and containernetworking-plugins. Pods use
# 10.78.30.0/24 and 10.78.31.0/24 on test bridges; forwarding of those
# subnets anywhere else is dropped while it runs. N=iterations (default 30).
set -u
W=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/pvecri-netbench-XXXXXX)
mkdir -p $B/cni $B/ctrd $B/ipam
cat > $B/cni/10-bench.conflist <<JSON
{"cniVersion":"1.0.0","name":"bench","plugins":[
 {"type":"bridge","bridge":"pvt-b31","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.78.31.0/24"}]],"dataDir":"$B/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}
JSON
cat > $B/ctrd/config.toml <<TOML
version = 2
root = "$B/ctrd/root"
state = "$B/ctrd/state"
[grpc]
  address = "$B/ctrd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "127.0.0.1:5000/registry.k8s.io/pause:3.9"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$B/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:5000"]
    endpoint = ["http://127.0.0.1:5000"]
TOML
N=${N:-30}
fwd=$(cat /proc/sys/net/ipv4/ip_forward)
nft -f - <<NFT
table inet pvecri-bench-guard {
  chain guard {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr { 10.78.30.0/24, 10.78.31.0/24 } oifname != { "pvt-b30", "pvt-b31" } drop
    ip daddr { 10.78.30.0/24, 10.78.31.0/24 } oifname != { "pvt-b30", "pvt-b31" } drop
  }
}
NFT
daemon_config() { # dir extra
  mkdir -p $1
  cat > $1/config.toml <<CFG
socket = "$1/run/pvecri.sock"
state_dir = "$1/state"
runtime_dir = "$1/run"
log_level = "info"
init_path = "$W/target/x86_64-unknown-linux-gnu/release/pvecri-init"
$(sed '/^\[network\]/,$d' $W/tests/critest/pvecri.toml)
$2
CFG
}
bench() { # label socket extra-args
  $W/target/release/pvecri-bench --endpoint $2 --iterations $N --label $1 $3 2>&1 | grep -E "RunPodSandbox|StopPodSandbox|pod start" | sed "s/^/$1: /"
}
median_network() { # log
  grep -o 'network_us=[0-9]*' $1 | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {print "network_us median", a[int((NR+1)/2)], "p90", a[int(NR*0.9)], "n", NR}'
}
for mode in builtin cni; do
  d=$B/pv-$mode
  rm -rf $d
  if [ $mode = builtin ]; then
    daemon_config $d $'[network]\nbridge = "pvt-b30"\npod_cidr = "10.78.30.0/24"\nmasquerade = false\negress = false'
  else
    daemon_config $d "$(printf '[network]\nmode = "cni"\ncni_conf_dir = "%s/cni"\ncni_bin_dirs = ["/usr/lib/cni"]' "$B")"
  fi
  $W/target/release/pvecri daemon --config $d/config.toml > $d/daemon.log 2>&1 &
  pid=$!
  sleep 2
  bench pvecri-$mode $d/run/pvecri.sock ""
  echo "pvecri-$mode: $(median_network $d/daemon.log)"
  bench pvecri-$mode-hostnet $d/run/pvecri.sock --host-network
  kill $pid; wait $pid
  umount -l $d/run/ns 2>/dev/null
done
# containerd with the same CNI config
c=$B/ctrd
rm -rf $c/root $c/state
containerd --config $c/config.toml > $c/containerd.log 2>&1 &
cpid=$!
sleep 3
crictl --runtime-endpoint unix://$c/containerd.sock pull 127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null 2>&1
bench containerd $c/containerd.sock "--image 127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox:1.29-2"
bench containerd-hostnet $c/containerd.sock "--host-network --image 127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox:1.29-2"
kill $cpid; wait $cpid
# Undo what the CNI plugins and containerd leave.
ip link del pvt-b31 2>/dev/null
echo $fwd > /proc/sys/net/ipv4/ip_forward
nft delete table inet pvecri-bench-guard
rm -rf "$B"
