# corral — one non-recursive Makefile.
#   make            libcorral (static + shared + corral.pc) and the three programs
#   make test       unit tests (cmocka) then integration tests (pytest, real redis-server)
#   make test SANITIZE=1   the same, built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       a demo pool on a private redis-server
#   make bench      benchmarks (figures beside redis-benchmark from the same run)
#   make bench-peers  corral beside RQ, Celery, Sidekiq and BullMQ (docs/benchmarks.md)
#   make deps       installs missing Debian packages (root), or prints the command
#   make install    PREFIX=/usr/local DESTDIR= bindir libdir includedir sysconfdir
#   make fuzz       libFuzzer targets (clang), each for FUZZ_SECONDS (default 600)
#   make chaos      the full chaos run (tests/chaos); make chaos-failover: failovers under load;
#                   make chaos-cluster: a Redis Cluster failed over and resharded under load;
#                   make soak: one hour of load with faults
#   make format / make check / make clean

VERSION    := 0.1.0
SANITIZE   ?= 0
ifeq ($(SANITIZE),1)
BUILD      ?= build-san
SANFLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT        ?= -O1
else
BUILD      ?= build
SANFLAGS   :=
OPT        ?= -O2
endif

CC         ?= cc
PKG_CONFIG ?= pkg-config
PYTHON     ?= /usr/bin/python3
PKGS       := hiredis jansson libcurl inih
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lev -lm
# What libcorral itself links (libcurl and libev are the programs'): the
# shared library's link line and corral.pc's Requires.private.
LIB_PKGS   := hiredis jansson inih
LIB_LIBS   := $(shell $(PKG_CONFIG) --libs $(LIB_PKGS) 2>/dev/null)

WARN       := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
              -Wno-unused-parameter -Wno-format-truncation
CFLAGS     ?= $(OPT) -g
# include/corral/ is the public API, the only part libcorral.so exports
# (its headers set default visibility; everything else is built hidden);
# common/include/corral/ holds the headers private to corral's programs,
# which link the static archive.
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DCORRAL_VERSION='"$(VERSION)"' -fPIC -fvisibility=hidden \
              $(WARN) -Iinclude -Icommon/include $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS := -Wl,--as-needed $(SANFLAGS) $(LDFLAGS)

PREFIX     ?= /usr/local
bindir     ?= $(PREFIX)/bin
sbindir    ?= $(PREFIX)/sbin
libdir     ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
sysconfdir ?= /etc
mandir     ?= $(PREFIX)/share/man
unitdir    ?= /lib/systemd/system
sysusersdir ?= /usr/lib/sysusers.d
tmpfilesdir ?= /usr/lib/tmpfiles.d

LIB_SRCS   := $(sort $(wildcard common/*.c queue/*.c))
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/corral_lua.o
# Each program's main() lives in <dir>/main.c; its other files are modules
# that unit tests link too.
SUP_MODS   := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c))
WRK_MODS   := $(filter-out worker/main.c,$(wildcard worker/*.c))
CTL_MODS   := $(filter-out ctl/main.c,$(wildcard ctl/*.c))
MOD_OBJS   := $(sort $(SUP_MODS) $(WRK_MODS) $(CTL_MODS))
MOD_OBJS   := $(MOD_OBJS:%.c=$(BUILD)/%.o)

PROGS      := $(BUILD)/corrald $(BUILD)/corral-worker $(BUILD)/corralctl $(BUILD)/corral-web
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Programs the integration tests drive library modules with (not installed).
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(BUILD)/tests/helpers/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

.PHONY: all lib test unit integration demo bench deps install uninstall format check clean \
        fuzz chaos chaos-failover chaos-cluster soak bench-peers clients-test
all: $(BUILD)/libcorral.a $(BUILD)/libcorral.so $(BUILD)/corral.pc $(PROGS)
lib: $(BUILD)/libcorral.a

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# The Redis Function library: the modules of queue/lua/, in the order of
# queue/lua/ORDER (the one definition of it; tests/integration/conftest.py
# reads it too), after the version of queue/lua/VERSION, as one source
# (build/gen/corral.lua) and embedded as a C string with its version.
LUA_ORDER   := $(shell sed -e '/^[[:space:]]*\#/d' -e '/^[[:space:]]*$$/d' queue/lua/ORDER)
LUA_SRCS    := $(addprefix queue/lua/,$(LUA_ORDER))
LUA_VERSION := $(shell cat queue/lua/VERSION)

$(BUILD)/gen/corral.lua: queue/lua/ORDER queue/lua/VERSION $(LUA_SRCS)
	@mkdir -p $(@D)
	{ echo '#!lua name=corral'; \
	  echo '-- generated from queue/lua/ (ORDER, VERSION) by the Makefile: do not edit'; \
	  echo 'local LIB_VERSION = $(LUA_VERSION)'; \
	  cat $(LUA_SRCS); } > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/corral_lua.c: $(BUILD)/gen/corral.lua
	{ echo '/* generated from queue/lua/ by the Makefile: do not edit */'; \
	  echo 'const int corral_lua_version = $(LUA_VERSION);'; \
	  echo 'const char corral_lua_source[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/corral_lua.o: $(BUILD)/gen/corral_lua.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libcorral.a: $(LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libcorral.so: $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,libcorral.so.0 -Wl,--no-undefined $(ALL_LDFLAGS) -o $@ $^ $(LIB_LIBS)

$(BUILD)/corral.pc: Makefile
	@mkdir -p $(@D)
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: corral\nDescription: Redis-backed elastic job queue for AI-service calls\nVersion: %s\nRequires: hiredis\nRequires.private: %s\nLibs: -L$${libdir} -lcorral\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(libdir)' '$(includedir)' '$(VERSION)' '$(filter-out hiredis,$(LIB_PKGS))' > $@

$(BUILD)/corrald: $(BUILD)/supervisor/main.o $(SUP_MODS:%.c=$(BUILD)/%.o) $(BUILD)/libcorral.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
$(BUILD)/corral-worker: $(BUILD)/worker/main.o $(WRK_MODS:%.c=$(BUILD)/%.o) $(BUILD)/libcorral.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
$(BUILD)/corralctl: $(BUILD)/ctl/main.o $(CTL_MODS:%.c=$(BUILD)/%.o) $(BUILD)/libcorral.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# corral-web (docs/web.md): libmicrohttpd, the status code of ctl/, and its
# browser files embedded as C arrays; uPlot comes from web/node_modules
# (npm ci once, from web/package-lock.json; offline after that).
WEB_MODS   := $(filter-out web/main.c,$(wildcard web/*.c))
WEB_PURE   := $(addprefix $(BUILD)/web/,router.o auth.o listen.o history.o)
WEB_LIBS   := $(shell $(PKG_CONFIG) --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd) -lpthread
WEB_FILES  := index.html=web/ui/index.html app.js=web/ui/app.js app.css=web/ui/app.css \
              uPlot.iife.min.js=web/node_modules/uplot/dist/uPlot.iife.min.js \
              uPlot.min.css=web/node_modules/uplot/dist/uPlot.min.css
$(BUILD)/corral-web: $(BUILD)/web/main.o $(WEB_MODS:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_assets.o \
                     $(CTL_MODS:%.c=$(BUILD)/%.o) $(BUILD)/libcorral.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(WEB_LIBS)
$(BUILD)/gen/web_assets.c: web/embed.sh web/ui/index.html web/ui/app.js web/ui/app.css \
                           web/node_modules/.package-lock.json
	@mkdir -p $(@D)
	sh web/embed.sh $(WEB_FILES) > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	$(CC) $(ALL_CFLAGS) -Iweb -c $< -o $@
# npm writes node_modules/.package-lock.json at each install: the stamp.
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "corral-web: npm is needed once to fetch uPlot" \
	  "(web/package-lock.json): apt-get install npm" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
$(BUILD)/tests/test_web_%: tests/unit/test_web_%.c $(WEB_PURE) $(BUILD)/libcorral.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iweb -o $@ $< $(WEB_PURE) $(BUILD)/libcorral.a $(ALL_LDFLAGS) $(PKG_LIBS) \
	  -lpthread $$($(PKG_CONFIG) --libs cmocka)

$(BUILD)/tests/%: tests/unit/%.c $(MOD_OBJS) $(BUILD)/libcorral.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isupervisor -Iworker -Ictl -o $@ $< $(MOD_OBJS) $(BUILD)/libcorral.a \
	  $(ALL_LDFLAGS) $(PKG_LIBS) $$($(PKG_CONFIG) --libs cmocka)

$(BUILD)/tests/helpers/%: tests/helpers/%.c $(MOD_OBJS) $(BUILD)/libcorral.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isupervisor -o $@ $< $(MOD_OBJS) $(BUILD)/libcorral.a $(ALL_LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench/%: bench/%.c $(MOD_OBJS) $(BUILD)/libcorral.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(MOD_OBJS) $(BUILD)/libcorral.a $(ALL_LDFLAGS) $(PKG_LIBS) -lpthread

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(HELPER_BINS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory clients-test

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The integration suite runs its tests side by side (pytest-xdist,
# TEST_JOBS workers, each with its own redis-server; TEST_JOBS=0 runs them
# one after another): the tests mostly wait on processes and clocks, so
# three at once take about a third of the time on two cores.
# It runs twice: programs on Redis's unix socket, then the tcp-acl pass,
# over TCP as the least-privilege ACL user of docs/operations.md. That pass
# runs only the test modules the mode can change (conftest.py,
# pytest_collection_modifyitems: those that start corrald, corral-worker,
# corralctl, corral-web or a client with redis_section(), read MODE or use
# ACL_PASSWORD, themselves or through a helper module they import); the
# rest (the FCALL tests of test_queue_*.py, the model, the Sentinel and
# Cluster tests on their own servers) run the same commands as the same
# user in both passes. tests/integration/README.md, "The tcp-acl pass",
# says why that subset covers every command path; CORRAL_TEST_ACL_ALL=1
# runs the whole suite in it.
# Under the sanitizers (SANITIZE=1) the suite runs once, over the unix
# socket: the tcp-acl pass checks the ACL user's rights, which the
# sanitizers do not change, and CI's time is better spent on the fuzzers.
TEST_JOBS ?= 3
XDIST := $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS))
integration: all $(HELPER_BINS)
	CORRAL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q $(XDIST) tests/integration $(PYTEST_ARGS)
ifneq ($(SANITIZE),1)
	CORRAL_TEST_REDIS=tcp-acl CORRAL_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -q $(XDIST) tests/integration $(PYTEST_ARGS)
endif

# The client packages (clients/, docs/protocol.md "Client packages"): the
# Node client's tests with node's own runner (npm ci first when its
# node_modules is missing or older than package-lock.json). The Python
# client's tests are tests/integration/test_client_python.py, run by
# integration.
clients-test: all
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "corral: clients-test needs Node.js >= 18 and npm" >&2; exit 1; }
	@[ clients/node/node_modules/.package-lock.json -nt clients/node/package-lock.json ] || \
	  (cd clients/node && npm ci --no-audit --no-fund)
	cd clients/node && CORRAL_BUILD=$(abspath $(BUILD)) node --test test/*.test.js test/*.test.mjs

demo: deps
	@$(MAKE) --no-print-directory all
	@CORRAL_BUILD=$(abspath $(BUILD)) sh examples/demo.sh
	@CORRAL_BUILD=$(abspath $(BUILD)) sh examples/demo_cluster.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@CORRAL_BUILD=$(abspath $(BUILD)) sh bench/run.sh

# corral beside RQ, Celery, Sidekiq and BullMQ (installed by install.sh from
# Debian and npm; none of their code is committed); rewrites docs/benchmarks.md.
bench-peers: deps
	@$(MAKE) --no-print-directory all
	@sh bench/peers/install.sh && CORRAL_BUILD=$(abspath $(BUILD)) $(PYTHON) bench/peers/run.py

# Fuzzing builds with clang into $(BUILD)-fuzz; tests/fuzz/run.sh owns the details.
FUZZ_SECONDS ?= 600
fuzz: deps
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# The full chaos run and the soak; a short chaos run is part of `make test`.
chaos: deps
	@$(MAKE) --no-print-directory all
	CORRAL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -s tests/chaos/test_chaos.py $(PYTEST_ARGS)
# Failovers under load: Sentinel (three kinds) and a DNS-style switch (docs/chaos.md).
chaos-failover: deps
	@$(MAKE) --no-print-directory all
	CORRAL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -s tests/chaos/test_failover.py $(PYTEST_ARGS)
# A Redis Cluster under load: a primary failover, a live slot migration,
# worker kills and a corrald restart (docs/chaos.md, "Redis Cluster").
chaos-cluster: deps
	@$(MAKE) --no-print-directory all
	CORRAL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -s tests/chaos/test_chaos_cluster.py $(PYTEST_ARGS)
soak: deps
	@$(MAKE) --no-print-directory all
	CORRAL_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/chaos/soak.py $(SOAK_ARGS)

DEB_PKGS := gcc make pkg-config libhiredis-dev libev-dev libjansson-dev libcurl4-openssl-dev \
            libinih-dev libcmocka-dev redis-server redis-tools python3 python3-pytest python3-redis redis-sentinel stunnel4 openssl \
            python3-hypothesis python3-hiredis python3-pytest-xdist \
            libmicrohttpd-dev python3-prometheus-client
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "corral: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "corral: missing Debian packages; run:" >&2; \
	    echo "  sudo apt-get install -y $$missing" >&2; exit 1; \
	  fi; \
	fi

install: all
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir)/pkgconfig $(DESTDIR)$(includedir)/corral \
	  $(DESTDIR)$(sysconfdir)/corral
	install -m 0755 $(BUILD)/corrald $(BUILD)/corral-worker $(BUILD)/corralctl $(DESTDIR)$(bindir)/
	install -m 0755 $(BUILD)/corral-web $(DESTDIR)$(bindir)/
	install -m 0644 $(BUILD)/libcorral.a $(DESTDIR)$(libdir)/
	install -m 0755 $(BUILD)/libcorral.so $(DESTDIR)$(libdir)/libcorral.so.0
	ln -sf libcorral.so.0 $(DESTDIR)$(libdir)/libcorral.so
	install -m 0644 $(BUILD)/corral.pc $(DESTDIR)$(libdir)/pkgconfig/
	install -m 0644 include/corral/*.h $(DESTDIR)$(includedir)/corral/
	test -e $(DESTDIR)$(sysconfdir)/corral/corral.conf || \
	  install -m 0640 systemd/corral.conf $(DESTDIR)$(sysconfdir)/corral/corral.conf
	install -d $(DESTDIR)$(unitdir) $(DESTDIR)$(sysusersdir) $(DESTDIR)$(tmpfilesdir)
	for u in corrald.service corrald@.service corral-web.service; do \
	  sed 's#@bindir@#$(bindir)#g' systemd/$$u > $(DESTDIR)$(unitdir)/$$u && \
	  chmod 0644 $(DESTDIR)$(unitdir)/$$u; done
	install -m 0644 systemd/corral.sysusers $(DESTDIR)$(sysusersdir)/corral.conf
	install -m 0644 systemd/corral.tmpfiles $(DESTDIR)$(tmpfilesdir)/corral.conf
	install -d $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man5 $(DESTDIR)$(mandir)/man8
	install -m 0644 man/corralctl.1 $(DESTDIR)$(mandir)/man1/
	install -m 0644 man/corral.conf.5 $(DESTDIR)$(mandir)/man5/
	install -m 0644 man/corrald.8 man/corral-worker.8 $(DESTDIR)$(mandir)/man8/
	install -m 0644 man/corral-web.8 $(DESTDIR)$(mandir)/man8/

uninstall:
	rm -f $(DESTDIR)$(bindir)/corrald $(DESTDIR)$(bindir)/corral-worker $(DESTDIR)$(bindir)/corralctl
	rm -f $(DESTDIR)$(bindir)/corral-web $(DESTDIR)$(unitdir)/corral-web.service \
	  $(DESTDIR)$(mandir)/man8/corral-web.8
	rm -f $(DESTDIR)$(libdir)/libcorral.a $(DESTDIR)$(libdir)/libcorral.so $(DESTDIR)$(libdir)/libcorral.so.0
	rm -f $(DESTDIR)$(libdir)/pkgconfig/corral.pc
	rm -rf $(DESTDIR)$(includedir)/corral
	rm -f $(DESTDIR)$(unitdir)/corrald.service $(DESTDIR)$(unitdir)/corrald@.service
	rm -f $(DESTDIR)$(sysusersdir)/corral.conf $(DESTDIR)$(tmpfilesdir)/corral.conf
	rm -f $(DESTDIR)$(mandir)/man1/corralctl.1 $(DESTDIR)$(mandir)/man5/corral.conf.5
	rm -f $(DESTDIR)$(mandir)/man8/corrald.8 $(DESTDIR)$(mandir)/man8/corral-worker.8

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_FILES)

check: all
	clang-format --dry-run -Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --suppress=missingIncludeSystem --inline-suppr -Iinclude -Icommon/include $(filter %.c,$(C_FILES))
	@# bench/ is measurement code that is not installed: cppcheck only.
	clang-tidy --quiet $(filter-out tests/% bench/%,$(filter %.c,$(C_FILES))) -- -std=c11 -D_GNU_SOURCE \
	  -DCORRAL_VERSION='"$(VERSION)"' -Iinclude -Icommon/include $(PKG_CFLAGS)

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
