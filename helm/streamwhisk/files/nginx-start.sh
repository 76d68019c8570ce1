#!/bin/sh
# nginx in the API pod: render the shared template (deploy/nginx/nginx.conf.tmpl; files/nginx.conf.tmpl links to it)
# exactly as cli/services.py render_nginx does, into a writable emptyDir prefix, and run it in the foreground.
# Env: LISTEN (host:port), UPSTREAM (the API, host:port); NGINX_PREFIX / NGINX_TEMPLATE for tests.
set -eu
P=${NGINX_PREFIX:-/var/lib/streamwhisk-nginx}
TMPL=${NGINX_TEMPLATE:-/etc/streamwhisk/nginx.conf.tmpl}
mkdir -p "$P/logs" "$P/temp"
ln -sf /dev/stdout "$P/logs/access.log"
sed -e "s#{{user_directive}}##g" -e "s#{{listen_actions}}##g" -e "s#{{prefix}}#$P#g" -e "s#{{listen}}#$LISTEN#g" -e "s#{{upstream}}#$UPSTREAM#g" \
  "$TMPL" > "$P/nginx.conf"
exec nginx -p "$P/" -c "$P/nginx.conf" -e /dev/stderr -g 'daemon off;'
