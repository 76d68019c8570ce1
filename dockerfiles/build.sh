#!/usr/bin/env bash
# Build Streamwhisk's images locally, with no registry: the Debian base comes from runtimes/build.py
# (mmdebstrap | docker import), every other image is FROM it.
#   dockerfiles/build.sh [TAG] [IMAGES...]     IMAGES: streamwhisk runtimes kafka couchdb nginx engine (default: all)
# engine (streamwhisk/invoker-engine, the chart's engine=pod invoker) is FROM streamwhisk/streamwhisk:TAG (built
# first when both are asked for) with the runtime images ENGINE_RUNTIMES (default: the ones `up` builds) baked in.
# Then push them to your cluster's registry (or `kind load` / `k3s ctr images import`) and point the chart's
# image values at them.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-0.1.0}
shift || true
IMAGES=${*:-streamwhisk runtimes kafka couchdb nginx engine}
ENGINE_RUNTIMES=${ENGINE_RUNTIMES:-streamwhisk/action-python:latest streamwhisk/action-nodejs20:latest streamwhisk/blackbox-test:latest streamwhisk/dockerskeleton:latest openwhisk/dockerskeleton:latest}
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
    engine)
      # One tar for all runtimes: layers they share (the Debian base) are stored once.
      cp dockerfiles/engine/engine-start.sh "$ctx/"; mkdir -p "$ctx/images"
      # shellcheck disable=SC2086
      docker save -o "$ctx/images/runtimes.tar" $ENGINE_RUNTIMES
      name=streamwhisk/invoker-engine ;;
    *) echo "unknown image $img" >&2; exit 2 ;;
  esac
  df=dockerfiles/$img/Dockerfile; [ "$img" = runtimes ] && df=dockerfiles/runtimes/python/Dockerfile
  base=$BASE; [ "$img" = engine ] && base=streamwhisk/streamwhisk:$TAG
  docker build --build-arg BASE="$base" -f "$df" -t "$name:$TAG" "$ctx"
done
