#!/bin/sh
# Installs the peers of bench/peers/run.py: RQ, Celery (Redis broker via
# kombu + redis-py) and Sidekiq from Debian 12's packages, gnuplot for the
# plots, and BullMQ (with ioredis, its Redis client, optional since
# BullMQ 6) from the npm registry into bench/peers/.node (git-ignored).
# Re-running is cheap: apt-get skips what is installed, npm what is current.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pkgs="redis-server redis-tools python3-redis python3-rq python3-celery ruby ruby-sidekiq ruby-redis gnuplot-nox nodejs npm"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
# nodejs from another repository may bundle npm; only ask for what is absent.
command -v npm >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ npm\b//')
command -v node >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ nodejs\b//')
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench-peers: missing Debian packages:$missing; run: sudo apt-get install$missing" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
if [ ! -f "$here/.node/node_modules/bullmq/package.json" ] || [ ! -f "$here/.node/node_modules/ioredis/package.json" ]; then
    npm install --prefix "$here/.node" --no-audit --no-fund --loglevel=error bullmq ioredis >/dev/null
fi
