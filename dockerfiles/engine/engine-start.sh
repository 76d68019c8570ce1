#!/bin/sh
# The Docker engine of an engine=pod invoker pod (helm/streamwhisk/templates/invoker.yaml), as the privileged
# `engine` container: dockerd on a unix socket in a directory shared with the invoker container, its data on an
# emptyDir, the runtime images loaded from the tars baked into this image, then `images-loaded` written beside
# the socket (the invoker starts after it; the readiness probe checks it).
#   ENGINE_SOCKET_DIR (/run/engine)    ENGINE_ACTION_SUBNET (172.31.254.0/24): the pool of the action network
#   ENGINE_DNS ("")                    ENGINE_DRAIN_S (80): on SIGTERM, wait at most this long for the invoker
set -eu
SOCK_DIR=${ENGINE_SOCKET_DIR:-/run/engine}
SUBNET=${ENGINE_ACTION_SUBNET:-172.31.254.0/24}
export DOCKER_HOST="unix://$SOCK_DIR/docker.sock"
mkdir -p "$SOCK_DIR"
rm -f "$SOCK_DIR/images-loaded" "$SOCK_DIR/docker.sock"
t0=$(date +%s.%N)
since() { date +%s.%N | awk -v s="$1" '{printf "%.1f", $1 - s}'; }

# Action containers go into this container's own cgroup, so the pod's memory limit covers them. cgroup v1: runc
# mounts only the container's own subtree at /sys/fs/cgroup/*, so dockerd's default parent (/docker) is inside it.
# cgroup v2: the container's cgroup namespace root; dockerd's processes move to a leaf first (a cgroup with
# children may hold no processes).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/engine
  while read -r p; do echo "$p" > /sys/fs/cgroup/engine/cgroup.procs 2>/dev/null || :; done < /sys/fs/cgroup/cgroup.procs
  sed -e 's/ / +/g' -e 's/^/+/' /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control || :
fi

set -- --host "$DOCKER_HOST" --data-root /var/lib/docker --exec-root /run/docker-exec --pidfile /run/dockerd.pid \
  --bridge none --icc=false --userland-proxy=false --ip-forward=true --iptables=true --log-level warn \
  --exec-opt native.cgroupdriver=cgroupfs \
  --default-address-pool "base=$SUBNET,size=${SUBNET##*/}"
for d in ${ENGINE_DNS:-}; do set -- "$@" --dns "$d"; done
dockerd "$@" &
pid=$!

stop() {
  # The invoker container holds this lock while its process runs (helm/streamwhisk/templates/invoker.yaml): keep
  # the engine (and the actions running in it) until the invoker is gone, at most ENGINE_DRAIN_S.
  deadline=$(( $(date +%s) + ${ENGINE_DRAIN_S:-80} ))
  while ! flock -n "$SOCK_DIR/invoker.lock" true 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
  kill -TERM "$pid" 2>/dev/null || :
  wait "$pid" || :
  exit 0
}
trap stop TERM INT

until docker version >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { echo "engine: dockerd exited" >&2; wait "$pid"; exit 1; }
  sleep 0.2
done
t1=$(date +%s.%N)
for tar in /opt/streamwhisk/engine/images/*.tar; do
  [ -e "$tar" ] || continue
  docker load -q -i "$tar"
done
touch "$SOCK_DIR/images-loaded"
echo "engine: dockerd answered after $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s, runtime images loaded after $(since "$t0") s"
# `wait` returns early on a signal (then the trap runs); otherwise dockerd died: let the kubelet restart us.
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || :; done
echo "engine: dockerd exited" >&2
exit 1
