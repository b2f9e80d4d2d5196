# Shared by examples/demo.sh and examples/demo_cluster.sh (sourced).
# demo_traps: the script's cleanup runs once at exit; INT and TERM exit
# (which runs cleanup through EXIT) rather than running it and going on.
demo_traps() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}
# say: a section's title, in bold on a terminal (NO_COLOR respected).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
