#!/usr/bin/env bash
# Build Streamwhisk's images locally, with no registry: the Debian base comes from runtimes/build.py
# (mmdebstrap | docker import), every other image is FROM it.
#   dockerfiles/build.sh [TAG] [IMAGES...]     IMAGES: streamwhisk runtimes kafka couchdb nginx (default: all)
# Then push them to your cluster's registry (or `kind load` / `k3s ctr images import`) and point the chart's
# image values at them.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-0.1.0}
shift || true
IMAGES=${*:-streamwhisk runtimes kafka couchdb nginx}
PY=${PYTHON:-.venv/bin/python}

# The content-hashed base image; also tagged :latest so the Dockerfiles' default BASE works.
BASE=$("$PY" -c 'from runtimes.build import ensure_images; import docker
ensure_images(lambda m: None)
print(sorted(docker.from_env().images.list("streamwhisk/base-python"), key=lambda i: i.attrs["Created"])[-1].tags[0])')
docker tag "$BASE" streamwhisk/base-python:latest
echo "base: $BASE"

# Each build gets a small context with only the files its Dockerfile copies (the repo holds venvs and state).
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
for img in $IMAGES; do
  rm -rf "${ctx:?}"/*
  case $img in
    streamwhisk)
      # No pip in the base and no index inside the build: bring the project and its dependencies as wheels.
      # Built from a copy of the packages, so setuptools leaves no build/ or egg-info behind in the work tree.
      src=$(mktemp -d); cp pyproject.toml README.md "$src/"
      for d in */; do [ -f "$d/__init__.py" ] && cp -r "${d%/}" "$src/"; done
      find "$src" -name __pycache__ -prune -exec rm -rf {} +
      "$PY" -m pip wheel --quiet --wheel-dir "$ctx/wheels" "$src" pip
      rm -rf "$src"
      name=streamwhisk/streamwhisk ;;
    runtimes) mkdir -p "$ctx/runtimes/python"; cp runtimes/python/proxy.py "$ctx/runtimes/python/"
      name=streamwhisk/action-python ;;
    kafka|couchdb)
      # The Kafka jars (Maven) and PouchDB Server (npm) as `streamwhisk install` puts them in WSK_HOME.
      "$PY" -c 'from cli.install import ensure_kafka_libs, ensure_pouchdb; from contracts.settings import load
s = load(); ensure_kafka_libs(s, print); ensure_pouchdb(s, print)'
      home=$("$PY" -c 'from contracts.settings import load; print(load().home)')
      if [ "$img" = kafka ]; then cp -rL "$home/kafka-libs" "$ctx/kafka-libs"
      else mkdir -p "$ctx/node"; cp -r "$home/node/node_modules" "$ctx/node/"; fi
      name=streamwhisk/$img ;;
    nginx) name=streamwhisk/$img ;;
    *) echo "unknown image $img" >&2; exit 2 ;;
  esac
  df=dockerfiles/$img/Dockerfile; [ "$img" = runtimes ] && df=dockerfiles/runtimes/python/Dockerfile
  docker build --build-arg BASE="$BASE" -f "$df" -t "$name:$TAG" "$ctx"
done
