#!/usr/bin/env python3
"""A single-node Kubernetes cluster built from the Go module proxy and Debian packages (no prebuilt download).

    python3 deploy/k8s/cluster.py build          # compile and cache the binaries (fresh: ~half an hour on 2 cores)
    python3 deploy/k8s/cluster.py up             # start it (reuses a running one), prints `export KUBECONFIG=...`
    python3 deploy/k8s/cluster.py import-image NAME [NAME...]   # docker save NAME | ctr import (k8s.io namespace)
    python3 deploy/k8s/cluster.py status | env | down [--keep-data] | reclaim-volumes
    python3 deploy/k8s/cluster.py netpol on|off  # enforce NetworkPolicies (kube-router firewall); also SWK8S_NETPOL=1

Layout. Binaries: $SWK8S_CACHE (default ~/.cache/streamwhisk-k8s/<version>), built by a wrapper module that
requires k8s.io/kubernetes and points its staging modules at their published k8s.io/* versions; etcd is
go.etcd.io/etcd/server/v3 at the version kubernetes itself requires; CoreDNS and a pause binary are built too and
turned into images without a registry; kube-router (its NetworkPolicy firewall only) for `netpol on`.
containerd, runc, ipset and the CNI plugins (bridge, host-local, portmap) come from Debian.
Storage: a default StorageClass `swk8s-hostpath` with static hostPath PVs under the cluster dir.

Isolation. etcd and kube-apiserver run on the host (apiserver on $SWK8S_API_PORT, all addresses, so 127.0.0.1
works). Everything that touches the network (our own containerd, kubelet, kube-proxy, the pods, the CNI bridge and
every iptables rule) runs in a private network namespace *and* a private mount namespace held by one `sleep`
process: the host keeps no KUBE-* chain, no bridge and no pod mount, and they all vanish when that process exits.
The only host-side objects are the veth `swk8s-h` (10.250.0.1/30, node is 10.250.0.2) with routes for the pod and
service CIDRs through it (so the host reaches ClusterIPs and NodePorts on 10.250.0.2 directly), cgroups under
/swk8s, and the kernel sysctls the kubelet insists on (saved and restored by `down`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

K8S_VERSION = os.environ.get("SWK8S_VERSION", "v1.34.4")
COREDNS_VERSION = os.environ.get("SWK8S_COREDNS_VERSION", "v1.15.0")
# NetworkPolicy enforcement for the bridge CNI: kube-router with only its firewall controller.
KUBE_ROUTER_VERSION = os.environ.get("SWK8S_KUBE_ROUTER_VERSION", "v2.1.0")
STAGING_VERSION = "v0." + K8S_VERSION.split(".", 1)[1]  # k8s.io/api etc. are published as v0.<minor>.<patch>
ETCD_VERSION = "v3.6.4"  # what k8s.io/kubernetes v1.34.x requires; overridden from its go.mod when found

CACHE = Path(os.environ.get("SWK8S_CACHE", str(Path.home() / ".cache" / "streamwhisk-k8s" / K8S_VERSION)))
BIN = CACHE / "bin"
DIR = Path(os.environ.get("SWK8S_DIR", "/var/lib/streamwhisk-k8s"))
API_PORT = int(os.environ.get("SWK8S_API_PORT", "16443"))
ETCD_CLIENT_PORT = int(os.environ.get("SWK8S_ETCD_PORT", "12379"))
ETCD_PEER_PORT = ETCD_CLIENT_PORT + 1

HOST_IP, NODE_IP, LINK_CIDR = "10.250.0.1", "10.250.0.2", "10.250.0.0/30"
HOST_VETH, NODE_VETH = "swk8s-h", "swk8s-n"
BRIDGE = "swk8s0"
POD_CIDR, SERVICE_CIDR = "10.244.0.0/24", "10.96.0.0/16"
KUBERNETES_SVC_IP, DNS_IP = "10.96.0.1", "10.96.0.10"
NODE_NAME = "swk8s-node"
CGROUP_ROOT = "swk8s"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # the name the kubelet and containerd expect; built here
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:" + COREDNS_VERSION
CNI_BIN = "/usr/lib/cni"

K8S_CMDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "kube-proxy"]
ALL_BINS = [*K8S_CMDS, "etcd", "pause", "coredns", "kube-router"]

# The kubelet sets these (it refuses to run with protectKernelDefaults otherwise); `down` puts the old values back.
KUBELET_SYSCTLS = ["vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"]


def log(msg: str) -> None:
    print(f"[k8s {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


# ---------------------------------------------------------------------------------------------------- build

def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # A dedicated module and build cache, so that "fresh" is measurable and nothing else's cache is touched.
    env.update(GOMODCACHE=str(CACHE / "gomodcache"), GOCACHE=str(CACHE / "gocache"), GOFLAGS="-modcacherw",
               CGO_ENABLED="0", GOTOOLCHAIN="local", GOPROXY=env.get("GOPROXY", "https://proxy.golang.org"))
    return env


def go(args: list[str], cwd: Path) -> None:
    run(["nice", "-n", "15", "go", *args], cwd=cwd, env=go_env())


def staging_replaces(k8s_gomod: str) -> list[str]:
    """The k8s.io/* modules kubernetes' own go.mod points at ./staging, i.e. those to take at their published tag."""
    mods, inside = [], False
    for line in k8s_gomod.splitlines():
        s = line.strip()
        if s.startswith("replace ("):
            inside = True
        elif inside and s == ")":
            inside = False
        elif inside and "=> ./staging/" in s:
            mods.append(s.split()[0])
    return mods


def required_version(gomod: str, module: str) -> str | None:
    for line in gomod.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
    return None


def write_k8s_module(src: Path) -> None:
    out = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{K8S_VERSION}"], env=go_env(),
                         check=True, text=True, capture_output=True).stdout
    gomod = Path(json.loads(out)["GoMod"]).read_text()
    etcd = required_version(gomod, "go.etcd.io/etcd/server/v3") or ETCD_VERSION
    src.mkdir(parents=True, exist_ok=True)
    lines = ["module streamwhisk.local/k8sbuild", "", "go 1.24.0", "",
             f"require (\n\tk8s.io/kubernetes {K8S_VERSION}\n\tgo.etcd.io/etcd/server/v3 {etcd}\n)", "", "replace ("]
    lines += [f"\t{m} => {m} {STAGING_VERSION}" for m in staging_replaces(gomod)]
    lines += [")", ""]
    lines += [f"tool k8s.io/kubernetes/cmd/{c}" for c in K8S_CMDS]
    (src / "go.mod").write_text("\n".join(lines) + "\n")
    (src / "etcd").mkdir(exist_ok=True)
    (src / "etcd" / "main.go").write_text(
        "// etcd built from the version kubernetes requires.\npackage main\n\nimport (\n\t\"os\"\n\n"
        "\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n")
    (src / "pause").mkdir(exist_ok=True)
    (src / "pause" / "main.go").write_text(PAUSE_GO)


PAUSE_GO = """// The pod sandbox's init: waits for a signal, reaps orphans.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
"""

# Only the plugins our Corefile uses: the full set pulls every cloud SDK and doubles the build.
COREDNS_PLUGINS = ["errors", "health", "ready", "kubernetes", "cache", "loop", "reload", "loadbalance", "log",
                   "forward", "hosts", "metrics", "whoami"]


def write_coredns_module(src: Path) -> None:
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(f"module streamwhisk.local/corednsbuild\n\ngo 1.24.0\n\n"
                                f"require github.com/coredns/coredns {COREDNS_VERSION}\n")
    imports = "\n".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"' for p in COREDNS_PLUGINS)
    (src / "main.go").write_text(
        "// CoreDNS with the plugins a cluster's DNS needs.\npackage main\n\nimport (\n"
        '\t"github.com/coredns/coredns/coremain"\n\t_ "github.com/coredns/coredns/core/dnsserver"\n'
        f"{imports}\n)\n\nfunc main() {{ coremain.Run() }}\n")


def ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    xs = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        xs += [f"-X {pkg}.gitVersion={K8S_VERSION}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
               f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return "-s -w " + " ".join(xs)


def cmd_build(args: list[str]) -> int:
    missing = [b for b in ALL_BINS if not (BIN / b).exists()]
    if not missing and "--force" not in args:  # --force: rebuild (from the Go build cache) to time it
        log(f"all binaries cached in {BIN}")
        return 0
    if shutil.which("go") is None:
        print("error: go is not on PATH (needs Go >= 1.24)", file=sys.stderr)
        return 1
    BIN.mkdir(parents=True, exist_ok=True)
    fresh = not (CACHE / "gocache").exists()
    times: dict[str, float] = {}
    t0 = time.monotonic()
    src = CACHE / "src" / "k8s"
    log(f"k8s.io/kubernetes {K8S_VERSION}: wrapper module in {src}; resolving modules")
    write_k8s_module(src)
    go(["mod", "tidy"], src)
    go(["mod", "download"], src)
    times["k8s_modules_s"] = round(time.monotonic() - t0, 1)
    log(f"modules ready ({times['k8s_modules_s']}s); compiling {', '.join(K8S_CMDS)}, etcd, pause (nice 15)")
    t1 = time.monotonic()
    pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_CMDS] + ["./etcd", "./pause"]
    go(["build", "-p", str(os.cpu_count() or 2), "-trimpath", "-ldflags", ldflags(), "-o", str(BIN) + "/", *pkgs],
       src)
    times["k8s_compile_s"] = round(time.monotonic() - t1, 1)
    log(f"kubernetes + etcd compiled ({times['k8s_compile_s']}s)")
    t2 = time.monotonic()
    csrc = CACHE / "src" / "coredns"
    log(f"CoreDNS {COREDNS_VERSION}: wrapper module in {csrc}")
    write_coredns_module(csrc)
    go(["mod", "tidy"], csrc)
    go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(BIN / "coredns"), "."], csrc)
    times["coredns_s"] = round(time.monotonic() - t2, 1)
    t3 = time.monotonic()
    log(f"kube-router {KUBE_ROUTER_VERSION} (NetworkPolicy firewall only)")
    run(["nice", "-n", "15", "go", "install", "-trimpath", "-ldflags", "-s -w",
         f"github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@{KUBE_ROUTER_VERSION}"],
        cwd=CACHE, env={**go_env(), "GOBIN": str(BIN)})
    times["kube_router_s"] = round(time.monotonic() - t3, 1)
    times["total_s"] = round(time.monotonic() - t0, 1)
    record = {"fresh_gocache": fresh, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **times}
    with (CACHE / "build-times.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    log(f"built in {times['total_s']}s ({'empty' if fresh else 'warm'} Go build cache): {BIN}")
    return 0


# ---------------------------------------------------------------------------------------------------- files

def path(*parts: str) -> Path:
    return DIR.joinpath(*parts)


def write_if_changed(p: Path, text: str) -> Path:
    # kube-proxy exits when its config file is written, even with the same content: leave it alone then.
    if not p.exists() or p.read_text() != text:
        p.write_text(text)
    return p


def pidfile(name: str) -> Path:
    return path("run", f"{name}.pid")


def start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def read_pid(name: str) -> int | None:
    """The pid in the file, if that very process (same start time: no reused pid) is still running."""
    try:
        pid_s, started = pidfile(name).read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def write_pid(name: str, pid: int) -> None:
    pidfile(name).write_text(f"{pid} {start_time(pid)}\n")


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def openssl(*args: str) -> None:
    run(["openssl", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cert(name: str, cn: str, org: str = "", sans: list[str] | None = None, server: bool = False) -> None:
    pki = path("pki")
    if (pki / f"{name}.crt").exists():
        return
    subj = f"/CN={cn}" + (f"/O={org}" if org else "")
    openssl("genrsa", "-out", str(pki / f"{name}.key"), "2048")
    openssl("req", "-new", "-key", str(pki / f"{name}.key"), "-subj", subj, "-out", str(pki / f"{name}.csr"))
    ext = ["keyUsage=critical,digitalSignature,keyEncipherment",
           "extendedKeyUsage=" + ("serverAuth,clientAuth" if server else "clientAuth")]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"), "-CAkey",
            str(pki / "ca.key"), "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(pki / f"{name}.ext"),
            "-out", str(pki / f"{name}.crt"))


def make_pki() -> None:
    pki = path("pki")
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    if not (pki / "ca.crt").exists():
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "ca.key"), "-out",
                str(pki / "ca.crt"), "-days", "3650", "-subj", "/CN=streamwhisk-k8s-ca")
    if not (pki / "sa.key").exists():
        openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    api_sans = ["DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local", "DNS:localhost", "IP:127.0.0.1", f"IP:{HOST_IP}",
                f"IP:{KUBERNETES_SVC_IP}"]
    make_cert("apiserver", "kube-apiserver", sans=api_sans, server=True)
    make_cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
    make_cert("admin", "streamwhisk-admin", "system:masters")
    make_cert("controller-manager", "system:kube-controller-manager")
    make_cert("scheduler", "system:kube-scheduler")
    make_cert("kube-proxy", "system:kube-proxy")
    make_cert("kube-router", "system:kube-router")
    make_cert("kubelet-client", f"system:node:{NODE_NAME}", "system:nodes")
    make_cert("kubelet", NODE_NAME, sans=[f"DNS:{NODE_NAME}", f"IP:{NODE_IP}"], server=True)


def b64(p: Path) -> str:
    import base64

    return base64.b64encode(p.read_bytes()).decode()


def kubeconfig(name: str, server: str, cert: str) -> Path:
    pki = path("pki")
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "swk8s",
        "clusters": [{"name": "swk8s", "cluster": {"server": server,
                                                   "certificate-authority-data": b64(pki / "ca.crt")}}],
        "users": [{"name": cert, "user": {"client-certificate-data": b64(pki / f"{cert}.crt"),
                                          "client-key-data": b64(pki / f"{cert}.key")}}],
        "contexts": [{"name": "swk8s", "context": {"cluster": "swk8s", "user": cert}}],
    }
    out = write_if_changed(path(f"{name}.kubeconfig"), json.dumps(cfg, indent=1))
    os.chmod(out, 0o600)
    return out


def admin_kubeconfig() -> Path:
    return path("admin.kubeconfig")


def kubelet_config() -> Path:
    pki = path("pki")
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet.crt"), "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        # No systemd here (PID 1 is the VM's init), cgroup v1: cgroupfs, under our own root.
        "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{CGROUP_ROOT}", "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{path('containerd', 'containerd.sock')}",
        "clusterDNS": [DNS_IP], "clusterDomain": "cluster.local", "resolvConf": str(path("resolv.conf")),
        "failSwapOn": False, "volumePluginDir": str(path("kubelet-plugins")),
        "serializeImagePulls": False, "maxPods": 110,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "5%", "imagefs.available": "5%"},
        "imageGCHighThresholdPercent": 95, "imageGCLowThresholdPercent": 90,
    }
    return write_if_changed(path("kubelet-config.json"), json.dumps(cfg, indent=1))


def proxy_config() -> Path:
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(path("kube-proxy.kubeconfig"))},
        "mode": "iptables", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME, "nodePortAddresses": ["primary"],
        "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
        # 0 = leave the kernel's conntrack settings alone (nf_conntrack_max is global, not per namespace).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return write_if_changed(path("kube-proxy-config.json"), json.dumps(cfg, indent=1))


def cni_config() -> None:
    d = path("cni", "net.d")
    d.mkdir(parents=True, exist_ok=True)
    conf = {
        "cniVersion": "1.0.0", "name": "swk8s",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(path("cni", "ipam"))}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    write_if_changed(d / "10-swk8s.conflist", json.dumps(conf, indent=1))


def containerd_config() -> Path:
    c = path("containerd")
    toml = f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{c / 'containerd.sock'}"

[ttrpc]
  address = "{c / 'containerd.sock.ttrpc'}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{c / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE: an oom_score_adj below containerd's own fails in runc init.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{shutil.which('runc') or '/usr/sbin/runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{path('cni', 'net.d')}"
"""
    return write_if_changed(c / "config.toml", toml)


# ---------------------------------------------------------------------------------------------------- images

def image_tar(name: str, files: dict[str, tuple[bytes, int]], entrypoint: list[str], out: Path) -> None:
    """A one-layer docker-archive image (what `docker save` writes), from in-memory files; no registry or Docker."""
    import hashlib
    import io
    import tarfile

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        dirs = sorted({str(Path(f).parent) for f in files} - {"."})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        for f, (data, mode) in sorted(files.items()):
            ti = tarfile.TarInfo(f)
            ti.size, ti.mode = len(data), mode
            t.addfile(ti, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"], "WorkingDir": "/"},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "history": [{"created_by": "swk8s"}]},
                        sort_keys=True).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [name], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:
        for n, data in (("layer.tar", layer_bytes), (cfg_name, config), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def ctr(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run(["ctr", "-a", str(path("containerd", "containerd.sock")), "-n", "k8s.io", *args], **kw)


def import_tar(tar: Path) -> None:
    with tar.open("rb") as f:
        ctr("images", "import", "-", stdin=f, stdout=subprocess.DEVNULL)


def has_image(name: str) -> bool:
    out = ctr("images", "ls", "-q", capture_output=True).stdout.split()
    return name in out or ("docker.io/" + name) in out or ("docker.io/library/" + name) in out


def import_builtin_images() -> None:
    tmp = path("images")
    tmp.mkdir(exist_ok=True)
    for name, binary, entry in ((PAUSE_IMAGE, "pause", ["/pause"]), (COREDNS_IMAGE, "coredns", ["/coredns"])):
        if has_image(name):
            continue
        tar = tmp / f"{binary}.tar"
        files = {binary: ((BIN / binary).read_bytes(), 0o755),
                 "etc/passwd": (b"root:x:0:0:root:/:/pause\nnobody:x:65534:65534:nobody:/:/pause\n", 0o644),
                 "etc/group": (b"root:x:0:\nnogroup:x:65534:\n", 0o644)}
        image_tar(name, files, entry, tar)
        import_tar(tar)
        tar.unlink()
        log(f"image {name} made from {BIN / binary} and imported")


def cmd_import_image(args: list[str]) -> int:
    """docker save NAME | ctr import into our containerd's k8s.io namespace (no registry needed)."""
    if not args:
        print("usage: cluster.py import-image IMAGE [IMAGE...]", file=sys.stderr)
        return 2
    if read_pid("containerd") is None:
        print("error: the cluster's containerd is not running (cluster.py up)", file=sys.stderr)
        return 1
    for name in args:
        t = time.monotonic()
        save = subprocess.Popen(["docker", "save", name], stdout=subprocess.PIPE)
        ctr("images", "import", "-", stdin=save.stdout, stdout=subprocess.DEVNULL)
        if save.wait() != 0:
            print(f"error: docker save {name} failed", file=sys.stderr)
            return 1
        log(f"imported {name} ({time.monotonic() - t:.1f}s)")
    return 0


# ---------------------------------------------------------------------------------------------------- processes

def start(name: str, argv: list[str], in_ns: bool = False) -> int:
    pid = read_pid(name)
    if pid:
        return pid
    if in_ns:
        holder = read_pid("netns-holder")
        assert holder, "namespace holder is not running"
        argv = ["nsenter", "-t", str(holder), "--net", "--mount", "--", *argv]
    path("logs").mkdir(exist_ok=True)
    logf = path("logs", f"{name}.log").open("ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=str(DIR),
                         start_new_session=True, close_fds=True)
    write_pid(name, p.pid)
    log(f"{name} started (pid {p.pid}, log {path('logs', name + '.log')})")
    return p.pid


def wait_for(what: str, check: object, timeout: float, proc: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        if proc and read_pid(proc) is None:
            raise SystemExit(f"error: {proc} exited; see {path('logs', proc + '.log')}\n"
                             + tail(path("logs", proc + ".log")))
        time.sleep(1)
    raise SystemExit(f"error: timed out after {timeout:.0f}s waiting for {what}")


def tail(p: Path, n: int = 15) -> str:
    try:
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def kubectl(*args: str, check: bool = True, capture: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(admin_kubeconfig()), *args], check=check,
                          text=True, capture_output=capture, **kw)  # type: ignore[call-overload, no-any-return]


def in_ns(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    holder = read_pid("netns-holder")
    assert holder
    return subprocess.run(["nsenter", "-t", str(holder), "--net", "--mount", "--", *argv], check=check, text=True,
                          capture_output=True)


def start_namespaces() -> int:
    """One `sleep` holds a private network + mount namespace; kubelet, containerd, kube-proxy and pods live there."""
    pid = read_pid("netns-holder")
    if pid:
        return pid
    ready = path("run", "holder.ready")
    ready.unlink(missing_ok=True)
    d = str(DIR)
    rebind = (f"mkdir -p {d} && mount --bind /run/swk8s-dir {d} && " if d.startswith("/var/lib/") else "")
    # /run and /var/lib become empty tmpfs inside (runc state, netns files, /var/lib/cni: none reaches the host);
    # /var/log is our var-log (pod logs); our own dir is bound back where it was.
    # Drop our copies of Docker's container mounts and netns files first: a private copy would pin them.
    script = (
        "set -e; findmnt -rn -o TARGET | grep -E '^(/var/lib/docker|/run/|/var/run/)' | sort -r "
        "| xargs -r -n1 umount -l; "
        "mount -t tmpfs -o mode=755 swk8s-run /run; mkdir -p /run/swk8s-dir; "
        f"mount --bind {d} /run/swk8s-dir; mount -t tmpfs -o mode=755 swk8s-varlib /var/lib; {rebind}"
        f"mount --bind {d}/var-log /var/log; ip link set lo up; "
        f"echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables || true; "
        f"touch {ready}; exec sleep infinity"
    )
    path("var-log").mkdir(exist_ok=True)
    pid = start("netns-holder", ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", script])
    wait_for("namespaces", ready.exists, 20, proc="netns-holder")
    # The link between host and node: a veth pair; deleting either end (or the namespace dying) removes both.
    run(["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", str(pid)])
    run(["ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_VETH])
    run(["ip", "link", "set", HOST_VETH, "up"])
    for cidr in (POD_CIDR, SERVICE_CIDR):  # the host reaches pods and ClusterIPs through the node
        run(["ip", "route", "add", cidr, "via", NODE_IP, "dev", HOST_VETH])
    in_ns("ip", "addr", "add", f"{NODE_IP}/30", "dev", NODE_VETH)
    in_ns("ip", "link", "set", NODE_VETH, "up")
    in_ns("ip", "route", "add", "default", "via", HOST_IP)
    log(f"namespaces ready: node {NODE_IP} <-> host {HOST_IP} ({HOST_VETH}); routes {POD_CIDR}, {SERVICE_CIDR}")
    return pid


def save_sysctls() -> None:
    f = path("sysctls-before.json")
    if f.exists():
        return
    f.write_text(json.dumps({k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS}))


def restore_sysctls() -> None:
    f = path("sysctls-before.json")
    if not f.exists():
        return
    for k, v in json.loads(f.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", k).write_text(v)


def ensure_cgroup_root() -> None:
    """The kubelet's --cgroup-root must exist in every v1 hierarchy; cpuset needs its cpus/mems filled in."""
    for ctl in Path("/sys/fs/cgroup").iterdir():
        if not ctl.is_dir() or ctl.is_symlink():
            continue
        d = ctl / CGROUP_ROOT
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (ctl / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((ctl / f).read_text())


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def api_ready() -> bool:
    return kubectl("get", "--raw", "/readyz", check=False).returncode == 0


def check_prereqs() -> list[str]:
    problems = [f"missing binary {BIN / b} (run: cluster.py build)" for b in ALL_BINS if not (BIN / b).exists()]
    problems += [f"missing {t} (apt-get install {pkg})" for t, pkg in
                 (("containerd", "containerd"), ("runc", "runc"), ("ctr", "containerd"), ("openssl", "openssl"),
                  ("iptables", "iptables"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
                  ("ip", "iproute2"), ("ipset", "ipset")) if shutil.which(t) is None]
    if not Path(CNI_BIN, "bridge").exists():
        problems.append(f"missing CNI plugins in {CNI_BIN} (apt-get install containernetworking-plugins)")
    return problems


def ensure_debian_packages() -> None:
    want = [pkg for t, pkg in (("containerd", "containerd"), ("runc", "runc"), ("ipset", "ipset"))
            if shutil.which(t) is None]
    if not Path(CNI_BIN, "bridge").exists():
        want.append("containernetworking-plugins")
    if want and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"apt-get install {' '.join(want)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *want]
        if subprocess.run(install, check=False, stdout=subprocess.DEVNULL, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False, stdout=subprocess.DEVNULL, env=env)
            subprocess.run(install, check=False, stdout=subprocess.DEVNULL, env=env)


def cmd_up(_args: list[str]) -> int:
    t0 = time.monotonic()
    if os.geteuid() != 0:
        print("error: needs root (namespaces, cgroups, mounts)", file=sys.stderr)
        return 1
    ensure_debian_packages()
    problems = check_prereqs()
    if problems:
        print("error:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    for sub in ("run", "logs", "etcd", "containerd", "kubelet", "kubelet-plugins", "cni/ipam"):
        path(sub).mkdir(parents=True, exist_ok=True)
    os.chmod(DIR, 0o700)
    if read_pid("kube-apiserver") is None:
        for port in (API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, API_PORT - 186, API_PORT - 184):
            if not port_free(port):
                print(f"error: port {port} is in use (set SWK8S_API_PORT / SWK8S_ETCD_PORT)", file=sys.stderr)
                return 1
    cold = read_pid("kube-apiserver") is None
    log(f"cluster dir {DIR}, binaries {BIN}")
    make_pki()
    api_local, api_node = f"https://127.0.0.1:{API_PORT}", f"https://{HOST_IP}:{API_PORT}"
    kubeconfig("admin", api_local, "admin")
    kubeconfig("controller-manager", api_local, "controller-manager")
    kubeconfig("scheduler", api_local, "scheduler")
    kubeconfig("kubelet", api_node, "kubelet-client")
    kubeconfig("kube-proxy", api_node, "kube-proxy")
    kubeconfig("kube-router", api_node, "kube-router")
    path("resolv.conf").write_text("# streamwhisk-k8s: no upstream DNS (this machine reaches no outside network)\n")
    cni_config()
    pki = path("pki")

    start_namespaces()
    start("etcd", [str(BIN / "etcd"), "--name", "swk8s", "--data-dir", str(path("etcd")),
                   "--listen-client-urls", f"http://127.0.0.1:{ETCD_CLIENT_PORT}",
                   "--advertise-client-urls", f"http://127.0.0.1:{ETCD_CLIENT_PORT}",
                   "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT}",
                   "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT}",
                   "--initial-cluster", f"swk8s=http://127.0.0.1:{ETCD_PEER_PORT}",
                   "--quota-backend-bytes", str(2 << 30), "--log-level", "warn"])
    wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health"), 60, proc="etcd")
    log("etcd healthy")
    start("kube-apiserver", [
        str(BIN / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--bind-address", "0.0.0.0", "--secure-port", str(API_PORT), "--advertise-address", HOST_IP,
        "--service-cluster-ip-range", SERVICE_CIDR, "--allow-privileged=true",
        "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
        "--client-ca-file", str(pki / "ca.crt"),
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
        "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
        "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
        "--kubelet-certificate-authority", str(pki / "ca.crt"),
        "--kubelet-preferred-address-types", "InternalIP",
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--profiling=false", "--v=1"])
    wait_for("kube-apiserver /readyz", api_ready, 180, proc="kube-apiserver")
    log(f"kube-apiserver ready on {api_local} (and {api_node} for the node)")
    start("kube-controller-manager", [
        str(BIN / "kube-controller-manager"), "--kubeconfig", str(path("controller-manager.kubeconfig")),
        "--authentication-kubeconfig", str(path("controller-manager.kubeconfig")),
        "--authorization-kubeconfig", str(path("controller-manager.kubeconfig")),
        "--bind-address", "127.0.0.1", "--secure-port", str(API_PORT - 186), "--leader-elect=false",
        "--cluster-signing-cert-file", str(pki / "ca.crt"), "--cluster-signing-key-file", str(pki / "ca.key"),
        "--root-ca-file", str(pki / "ca.crt"), "--service-account-private-key-file", str(pki / "sa.key"),
        "--use-service-account-credentials=true", "--service-cluster-ip-range", SERVICE_CIDR,
        "--allocate-node-cidrs=true", "--cluster-cidr", POD_CIDR, "--node-cidr-mask-size", "24",
        "--profiling=false"])
    start("kube-scheduler", [
        str(BIN / "kube-scheduler"), "--kubeconfig", str(path("scheduler.kubeconfig")),
        "--authentication-kubeconfig", str(path("scheduler.kubeconfig")),
        "--authorization-kubeconfig", str(path("scheduler.kubeconfig")),
        "--bind-address", "127.0.0.1", "--secure-port", str(API_PORT - 184), "--leader-elect=false",
        "--profiling=false"])

    start("containerd", ["containerd", "--config", str(containerd_config())], in_ns=True)
    wait_for("containerd", lambda: ctr("version", capture_output=True).returncode == 0, 60, proc="containerd")
    import_builtin_images()
    ensure_cgroup_root()
    save_sysctls()
    start("kubelet", [
        str(BIN / "kubelet"), "--config", str(kubelet_config()), "--kubeconfig", str(path("kubelet.kubeconfig")),
        "--root-dir", str(path("kubelet")), "--hostname-override", NODE_NAME, "--node-ip", NODE_IP,
        "--v=1"], in_ns=True)
    start("kube-proxy", [str(BIN / "kube-proxy"), "--config", str(proxy_config())], in_ns=True)
    wait_for(f"node {NODE_NAME} Ready", lambda: kubectl(
        "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout == "True",
        180, proc="kubelet")
    log(f"node {NODE_NAME} Ready")
    if os.environ.get("SWK8S_NETPOL") == "1" or path("netpol-on").exists():
        start_netpol()
    apply_coredns()
    ensure_volumes()
    wait_for("CoreDNS available", lambda: kubectl(
        "-n", "kube-system", "get", "deploy", "coredns", "-o", "jsonpath={.status.availableReplicas}").stdout == "1",
        180, proc="kubelet")
    elapsed = time.monotonic() - t0
    if cold:
        path("up-seconds").write_text(f"{elapsed:.1f}\n")
    log(f"cluster up in {elapsed:.0f}s; CoreDNS Ready at {DNS_IP}")
    log(memory_report())
    print(f"export KUBECONFIG={admin_kubeconfig()}")
    print(f"export PATH={BIN}:$PATH")
    return 0


def start_netpol() -> None:
    kubectl("apply", "-f", "-", input=KUBE_ROUTER_RBAC)
    start("kube-router", [
        str(BIN / "kube-router"), "--kubeconfig", str(path("kube-router.kubeconfig")),
        "--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
        "--hostname-override", NODE_NAME, "--enable-ipv6=false", "--metrics-port=0", "--health-port=20244",
        "--service-cluster-ip-range", SERVICE_CIDR], in_ns=True)
    path("netpol-on").touch()


def netpol_cleanup() -> None:
    """Remove kube-router's filter chains and ipsets from the node namespace (its --cleanup-config panics in
    v2.1.0 when the service proxy never ran). Other chains (kube-proxy's) are restored as they were."""
    import re

    ours = re.compile(r"KUBE-(ROUTER|NWPLCY|POD-FW)")
    dump = in_ns("iptables-save", "-t", "filter").stdout.splitlines()
    kept = [ln for ln in dump if not ours.search(ln)]
    if len(kept) != len(dump):
        holder = read_pid("netns-holder")
        subprocess.run(["nsenter", "-t", str(holder), "--net", "--mount", "--", "iptables-restore", "-w", "5"],
                       input="\n".join(kept) + "\n", text=True, check=True)
    for name in in_ns("ipset", "list", "-n", check=False).stdout.split():
        if name.startswith(("KUBE-DST-", "KUBE-SRC-", "kube-router")):
            in_ns("ipset", "destroy", name, check=False)


def cmd_netpol(args: list[str]) -> int:
    """`netpol on`: enforce NetworkPolicies (kube-router's firewall); `off`: stop it and remove its rules."""
    if read_pid("kube-apiserver") is None or read_pid("netns-holder") is None:
        print("error: the cluster is not running", file=sys.stderr)
        return 1
    if args[:1] == ["on"]:
        start_netpol()
        probe = "import urllib.request as u; u.urlopen('http://127.0.0.1:20244/healthz', timeout=2)"
        wait_for("kube-router healthy", lambda: in_ns("python3", "-c", probe, check=False).returncode == 0, 60,
                 proc="kube-router")
        log("NetworkPolicies are enforced (kube-router firewall)")
    elif args[:1] == ["off"]:
        stop("kube-router")
        path("netpol-on").unlink(missing_ok=True)
        netpol_cleanup()
        log("NetworkPolicies no longer enforced; kube-router's chains and ipsets removed")
    else:
        print(f"netpol: {'on' if read_pid('kube-router') else 'off'}")
    return 0


KUBE_ROUTER_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "swk8s:kube-router"}
rules:
- apiGroups: ["", networking.k8s.io, discovery.k8s.io]
  resources: [namespaces, pods, services, nodes, endpoints, endpointslices, networkpolicies]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "swk8s:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "swk8s:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}]
"""

COREDNS_MANIFEST = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        cache 30
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
      - name: coredns
        image: IMAGE
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {containerPort: 53, name: dns, protocol: UDP}
        - {containerPort: 53, name: dns-tcp, protocol: TCP}
        resources: {requests: {cpu: 50m, memory: 40Mi}, limits: {memory: 170Mi}}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        livenessProbe: {httpGet: {path: /health, port: 8080}, initialDelaySeconds: 30, periodSeconds: 10}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
      volumes:
      - name: config
        configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
"""


N_VOLUMES = int(os.environ.get("SWK8S_VOLUMES", "12"))
STORAGE_CLASS = "swk8s-hostpath"  # tests/k8s/chart.py makes its own "swk8s-local" PVs


def ensure_volumes() -> None:
    """A default StorageClass backed by pre-made hostPath PVs under our dir (StatefulSets' claims bind to them).

    No dynamic provisioner is built: static PVs are enough on one node. Released ones (claim deleted) are wiped
    and made Available again here, so repeated chart installs don't run out.
    """
    sc: dict[str, object] = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": STORAGE_CLASS,
                       "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
          "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
          "reclaimPolicy": "Retain"}
    items: list[dict[str, object]] = [sc]
    for i in range(N_VOLUMES):
        d = path("volumes", f"pv-{i}")
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)  # hostPath gets no fsGroup: a pod running as nobody (Kafka, PouchDB) must write too
        items.append({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"swk8s-pv-{i}"},
            "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                     "hostPath": {"path": str(d), "type": "Directory"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}}})
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    reclaim_volumes()


def reclaim_volumes() -> int:
    pvs = json.loads(kubectl("get", "pv", "-o", "json").stdout)["items"]
    n = 0
    for pv in pvs:
        if pv["metadata"]["name"].startswith("swk8s-pv-") and pv.get("status", {}).get("phase") == "Released":
            d = Path(pv["spec"]["hostPath"]["path"])
            if d.is_dir() and d.is_relative_to(path("volumes")):
                for child in d.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            kubectl("patch", "pv", pv["metadata"]["name"], "--type", "json", "-p",
                    '[{"op": "remove", "path": "/spec/claimRef"}]')
            n += 1
    if n:
        log(f"{n} released volume(s) wiped and made available again")
    return n


def cmd_reclaim_volumes(_args: list[str]) -> int:
    reclaim_volumes()
    return 0


def apply_coredns() -> None:
    manifest = COREDNS_MANIFEST.replace("IMAGE", COREDNS_IMAGE).replace("DNS_IP", DNS_IP)
    # The namespace's default ServiceAccount comes from the controller-manager: wait for it first.
    wait_for("kube-system ServiceAccount", lambda: kubectl("-n", "kube-system", "get", "sa", "default",
                                                           check=False).returncode == 0, 60)
    kubectl("apply", "-f", "-", input=manifest)
    log("CoreDNS applied")


# ---------------------------------------------------------------------------------------------------- down/status

def ns_inode(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def cgroup_dirs() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [d / CGROUP_ROOT for d in sorted(base.iterdir()) if (d / CGROUP_ROOT).is_dir()]


def pids_in_namespaces() -> set[int]:
    """Every process in our cgroups (the pods) or in the holder's namespaces (containerd, shims, kubelet...)."""
    out: set[int] = set()
    for root in cgroup_dirs():
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                out.update(int(x) for x in procs.read_text().split())
    holder = read_pid("netns-holder")
    me = os.getpid()
    # Never the host's own namespaces (that would be every process on the machine).
    if holder and ns_inode(holder, "mnt") != ns_inode(me, "mnt") and ns_inode(holder, "net") != ns_inode(me, "net"):
        mnt, net = ns_inode(holder, "mnt"), ns_inode(holder, "net")
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and int(p.name) != os.getpid():
                pid = int(p.name)
                if ns_inode(pid, "mnt") == mnt or ns_inode(pid, "net") == net:
                    out.add(pid)
    return out


def stop(name: str, timeout: float = 15) -> None:
    pid = read_pid(name)
    if pid is None:
        pidfile(name).unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pidfile(name).unlink(missing_ok=True)
    log(f"{name} stopped")


def thaw_cgroups() -> None:
    freezer = Path("/sys/fs/cgroup/freezer") / CGROUP_ROOT
    if freezer.is_dir():
        for state in freezer.rglob("freezer.state"):
            with contextlib.suppress(OSError):
                if state.read_text().strip() != "THAWED":
                    state.write_text("THAWED")


def remove_cgroups() -> None:
    for root in cgroup_dirs():
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def cmd_down(args: list[str]) -> int:
    if not DIR.exists() and not cgroup_dirs():
        log("nothing to stop")
        return cmd_status([])
    # Control plane first, so nothing reschedules; then the node side, then every process left in our
    # namespaces or cgroups (container processes, shims); the namespaces die with their last process.
    for name in ("kube-controller-manager", "kube-scheduler", "kube-router", "kube-proxy", "kubelet", "containerd"):
        stop(name)
    for _ in range(3):
        thaw_cgroups()  # a paused container (the invoker pauses idle ones) is frozen: SIGKILL waits for a thaw
        left = pids_in_namespaces() - {read_pid("netns-holder") or -1}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not left:
            break
        time.sleep(1)
    stop("netns-holder", 5)
    stop("kube-apiserver")
    stop("etcd")
    time.sleep(0.5)
    remove_cgroups()
    if Path(f"/sys/class/net/{HOST_VETH}").exists():  # normally gone with the namespace
        subprocess.run(["ip", "link", "del", HOST_VETH], check=False)
    restore_sysctls()
    if "--keep-data" not in args:
        shutil.rmtree(DIR, ignore_errors=True)
        log(f"removed {DIR}")
    return cmd_status([])


def cmd_status(_args: list[str]) -> int:
    names = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "netns-holder", "containerd",
             "kubelet", "kube-proxy", "kube-router"]
    running = {n: read_pid(n) for n in names} if DIR.exists() else {}
    for n in names:
        pid = running.get(n)
        print(f"{n:24} {'running pid ' + str(pid) if pid else 'stopped'}")
    leftovers = []
    if Path(f"/sys/class/net/{HOST_VETH}").exists():
        leftovers.append(f"link {HOST_VETH}")
    leftovers += [f"cgroup {d}" for d in cgroup_dirs()]
    mounts = [ln.split()[1] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
              if len(ln.split()) > 4 and ln.split()[4].startswith(str(DIR))]
    leftovers += [f"mount {m}" for m in mounts]
    if DIR.exists():
        leftovers.append(f"dir {DIR}")
    if any(running.values()):
        ok = running.get("kube-apiserver") and kubectl("get", "nodes", "-o", "wide", check=False).stdout
        print(ok or "apiserver not answering")
        print(memory_report())
        print(f"KUBECONFIG={admin_kubeconfig()}")
    else:
        print("host leftovers: " + (", ".join(leftovers) if leftovers else "none"))
    return 0


def rss_kib(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def memory_report() -> str:
    daemons = {n: read_pid(n) for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                        "containerd", "kubelet", "kube-proxy", "kube-router")}
    named = {p for p in daemons.values() if p}
    everything = named | pids_in_namespaces()
    parts = ", ".join(f"{n} {rss_kib({p}) // 1024}" for n, p in daemons.items() if p)
    return (f"RSS MiB: {parts}; daemons {rss_kib(named) // 1024}; with shims and pods "
            f"{rss_kib(everything) // 1024} ({len(everything)} processes)")


def cmd_env(_args: list[str]) -> int:
    print(f"export KUBECONFIG={admin_kubeconfig()}")
    print(f"export PATH={BIN}:$PATH")
    return 0


def main(argv: list[str]) -> int:
    cmds = {"build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env,
            "import-image": cmd_import_image, "reclaim-volumes": cmd_reclaim_volumes, "netpol": cmd_netpol}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__)
        return 2
    return cmds[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
