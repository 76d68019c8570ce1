#!/bin/sh
# Build the action image on this node: ./buildAndPush.sh <image name>. No registry is needed: each Streamwhisk
# invoker runs images its node's Docker has, so build it on every invoker node (or push it where they can pull).
set -e
[ -n "$1" ] || { echo "usage: $0 <image name>" >&2; exit 1; }
docker build -t "$1" .
echo "built $1: wsk action create myAction --docker $1"
