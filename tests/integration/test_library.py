"""libcorral.so exports the public API, the functions declared in
include/corral/, and nothing else (the programs' internals stay in the
static archive they link); the public headers are enough to build an
application; corral.pc names what libcorral links (not libcurl)."""
import glob
import os
import re
import subprocess

import pytest

from conftest import REPO

PUBLIC = os.path.join(REPO, "include", "corral")


def declared_functions():
    """Every corral_* function declared in include/corral/*.h."""
    names = set()
    for path in glob.glob(os.path.join(PUBLIC, "*.h")):
        text = open(path).read()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        names.update(re.findall(r"\b(corral_\w+)\s*\(", text))
    return names


def exported_symbols(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def lib(build_dir):
    path = os.path.join(build_dir, "libcorral.so")
    if not os.path.exists(path):
        pytest.skip("libcorral.so not built (make)")
    return path


def test_the_shared_library_exports_exactly_the_public_declarations(lib):
    declared, exported = declared_functions(), exported_symbols(lib)
    assert len(declared) > 50  # the parse found the API
    assert exported - declared == set(), "exported but not public API"
    assert declared - exported == set(), "declared in include/corral but not exported"


def cc(build_dir, tmp_path, source, name):
    """Builds source against include/ alone and libcorral.so; the result."""
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "hiredis"], capture_output=True,
                           text=True, check=True).stdout.split()
    if os.path.basename(build_dir.rstrip("/")).endswith("-san"):
        flags += ["-fsanitize=address,undefined"]
    return subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-I", os.path.join(REPO, "include"),
                           str(src), "-o", str(tmp_path / name), "-L", build_dir, "-lcorral",
                           *flags], capture_output=True, text=True, timeout=60)


APP = r"""
#include <stdio.h>
#include <string.h>
#include "corral/bootstrap.h"
#include "corral/config.h"
#include "corral/err.h"
#include "corral/queue.h"
#include "corral/redis.h"

int main(void)
{
    struct corral_config *cfg = corral_config_defaults();
    struct corral_err err;
    if (corral_config_set_redis_url(cfg, "unix:///run/r.sock?db=3", &err) < 0)
        return 1;
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, cfg, -1, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0);
    printf("%s %d %d %zu\n", cfg->redis.addr.path, cfg->redis.addr.db,
           corral_queue_name_valid("prompts"), b.n);
    corral_bootstrap_free(&b);
    corral_config_free(cfg);
    return corral_functions_version() > 0 ? 0 : 1;
}
"""


def test_an_application_builds_on_the_public_headers_and_the_shared_library(build_dir, tmp_path,
                                                                             lib):
    res = cc(build_dir, tmp_path, APP, "app")
    assert res.returncode == 0, res.stderr
    libdir = tmp_path / "lib"  # as installed: found by its soname
    libdir.mkdir()
    os.symlink(lib, libdir / "libcorral.so.0")
    run = subprocess.run([str(tmp_path / "app")], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "/run/r.sock 3 1 1\n"


def test_internals_are_not_reachable_through_the_shared_library(build_dir, tmp_path, lib):
    src = "void *corral_xmalloc(unsigned long n);\nint main(void) { return !corral_xmalloc(1); }\n"
    res = cc(build_dir, tmp_path, src, "internal")
    assert res.returncode != 0
    assert "undefined reference to `corral_xmalloc'" in res.stderr


def test_corral_pc_requires_what_libcorral_links_and_no_more(build_dir, lib):
    pc = open(os.path.join(build_dir, "corral.pc")).read()
    fields = dict(line.split(": ", 1) for line in pc.splitlines() if ": " in line)
    required = set(fields.get("Requires", "").split()) | set(
        fields.get("Requires.private", "").split())
    assert "libcurl" not in required
    needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True,
                            check=True).stdout
    # libc, and the sanitizers' runtimes of a SANITIZE=1 build, are no package's
    linked = {m for m in re.findall(r"NEEDED.*\[lib(\w+)\.so", needed)
              if m not in ("c", "asan", "ubsan")}
    assert required == linked, (required, linked)
    # the public headers include hiredis's: an application needs its flags
    assert "hiredis" in fields.get("Requires", "").split()
