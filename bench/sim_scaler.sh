#!/bin/sh
# Runs the scaling simulator and redraws docs/scaling-burst.svg from its
# step-burst trace. Usage: bench/sim_scaler.sh [BUILD_DIR]  (default: build)
# Needs gnuplot (Debian: gnuplot-nox) for the plot; without it, the figures
# are still printed.
set -eu
B=${1:-${CORRAL_BUILD:-build}}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp /tmp/corral-sim.XXXXXX.csv)
trap 'rm -f "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
status=0
"$B/bench/sim_scaler" -c "$tmp" || status=$?
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot -e "in='$tmp'; out='$here/docs/scaling-burst.svg'" "$here/bench/sim_plot.gp"
    echo "plot: docs/scaling-burst.svg"
else
    echo "gnuplot not found (apt-get install gnuplot-nox): plot not redrawn" >&2
fi
exit $status
