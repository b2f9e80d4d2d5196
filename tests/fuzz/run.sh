#!/bin/sh
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and
# runs each for SECONDS (default 600) on a copy of its seed corpus, one at a
# time. Exits non-zero on any crash, leak, timeout or out-of-memory, naming
# the fuzzer and the input that did it. POSIX sh.
#   sh tests/fuzz/run.sh [SECONDS] [NAME...]       (make fuzz FUZZ_SECONDS=N)
#   sh tests/fuzz/run.sh merge [NAME...]
# merge keeps what earlier runs found: the inputs of build-fuzz/corpus/NAME
# that reach new coverage are added to the seeds in tests/fuzz/corpus/NAME
# (edges only for config, sse and ratelimit, whose hit-count features would
# add hundreds).
set -eu

MODE=fuzz
if [ "${1:-}" = merge ]; then
  MODE=merge
  shift
  SECONDS_EACH=0
else
  SECONDS_EACH=${1:-600}
  [ $# -gt 0 ] && shift
fi
cd "$(dirname "$0")/../.."
TOP=$(pwd)
OUT=$TOP/build-fuzz
SRC=$TOP/tests/fuzz

ALL="config parse wmsg classify job jsontext sse usage ratelimit"
NAMES=${*:-$ALL}

# clang and its fuzzer runtime.
missing=""
command -v clang >/dev/null 2>&1 || missing="clang"
dpkg-query -W -f='${Status}\n' libclang-rt-14-dev 2>/dev/null | grep -q '^install ok installed' ||
  missing="$missing libclang-rt-14-dev"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "fuzz: installing$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "fuzz: clang and its fuzzer runtime are missing; run:" >&2
    echo "  sudo apt-get install -y $missing" >&2
    exit 1
  fi
fi

CC=${FUZZ_CC:-clang}
PKGS="hiredis jansson libcurl inih"
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 -fno-omit-frame-pointer $(pkg-config --cflags $PKGS) -Iinclude -Icommon/include -Iworker -D_GNU_SOURCE -std=c11 \
 -DCORRAL_VERSION=\"fuzz\""
LIBS="$(pkg-config --libs $PKGS) -lev -lm"

# The corral sources the targets reach, compiled here with the same flags
# (with -c, -fsanitize=fuzzer only adds the coverage instrumentation).
mkdir -p "$OUT/obj" "$OUT/gen"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' queue/corral.lua |
  { echo 'const char corral_lua_source[] ='; cat; echo ';'; } > "$OUT/gen/corral_lua.c"
LIB_SRCS="$(ls common/*.c queue/*.c) worker/classify.c worker/split.c worker/usage.c worker/sse.c \
  worker/ratelimit.c $OUT/gen/corral_lua.c"
objs=""
for src in $LIB_SRCS; do
  obj=$OUT/obj/$(echo "${src#"$OUT"/}" | tr / _ | sed 's/\.c$/.o/')
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$0" -nt "$obj" ] ||
     [ -n "$(find include common/include worker/classify.h worker/worker.h worker/usage.h worker/sse.h \
       worker/ratelimit.h -newer "$obj" 2>/dev/null | head -1)" ]; then
    # shellcheck disable=SC2086
    $CC $CFLAGS -c "$src" -o "$obj"
  fi
  objs="$objs $obj"
done
rm -f "$OUT/libcorral-fuzz.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libcorral-fuzz.a" $objs

for name in $NAMES; do
  # shellcheck disable=SC2086
  $CC $CFLAGS -o "$OUT/fuzz_$name" "$SRC/fuzz_$name.c" "$OUT/libcorral-fuzz.a" $LIBS
done

if [ "$MODE" = merge ]; then
  for name in $NAMES; do
    counters=""
    case $name in config | sse | ratelimit) counters="-use_counters=0" ;; esac
    # shellcheck disable=SC2086
    "$OUT/fuzz_$name" -merge=1 $counters "$SRC/corpus/$name" "$OUT/corpus/$name" \
      >"$OUT/merge_$name.log" 2>&1 || { echo "fuzz: merging $name failed: $OUT/merge_$name.log" >&2; exit 1; }
    echo "== $name: $(ls "$SRC/corpus/$name" | wc -l) seeds, $(cat "$SRC/corpus/$name"/* | wc -c) bytes"
  done
  exit 0
fi

# Each target runs on a work copy of its seeds; new inputs stay in
# build-fuzz/corpus/NAME (merge them into tests/fuzz/corpus/NAME with -merge=1).
status=0
for name in $NAMES; do
  work=$OUT/corpus/$name
  arts=$OUT/artifacts/$name
  mkdir -p "$work" "$arts"
  [ -d "$SRC/corpus/$name" ] && cp -R "$SRC/corpus/$name/." "$work/"
  log=$OUT/fuzz_$name.log
  dict=""
  [ -f "$SRC/fuzz_$name.dict" ] && dict="-dict=$SRC/fuzz_$name.dict"
  echo "== fuzz_$name: ${SECONDS_EACH}s (log: $log)"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a leak
  # or blow-up; -print_final_stats: exec counts and coverage for the docs.
  set +e
  "$OUT/fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$arts/" $dict "$work" >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)' "$log" | sed 's/^/   /'
  if [ $rc -ne 0 ]; then
    status=1
    echo "fuzz_$name FAILED (exit $rc):" >&2
    grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY|^==.*(deadly|timeout|out-of-memory)' \
      "$log" | head -5 >&2 || true
    for a in $(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //'); do
      echo "  crashing input: $a" >&2
      echo "  reproduce: $OUT/fuzz_$name $a" >&2
    done
  fi
done
exit $status
