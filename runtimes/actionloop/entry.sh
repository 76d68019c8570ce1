#!/bin/sh
# The image's entrypoint: `-compile <main>` makes the image an offline compiler (precompile.py), as OpenWhisk's
# ActionLoop images; anything else is the command to run (by default the proxy).
if [ "$1" = "-compile" ]; then
    shift
    exec python3 /opt/ow/precompile.py "$@"
fi
exec "$@"
