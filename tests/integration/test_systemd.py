"""The systemd units and `make install`: the unit files verify, the
hardening scores as the [systemd] issue asks, and the installed tree holds
what it should. (A first cut of that issue.)"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory, build_dir):
    if not os.path.exists(os.path.join(build_dir, "corrald")):
        pytest.skip("not built")
    dest = tmp_path_factory.mktemp("destdir")
    res = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr",
                          f"BUILD={os.path.relpath(build_dir, REPO)}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return dest


def test_install_puts_every_file_in_place(installed):
    want = ["usr/bin/corrald", "usr/bin/corral-worker", "usr/bin/corralctl",
            "usr/lib/libcorral.a", "usr/lib/libcorral.so.0", "usr/lib/libcorral.so",
            "usr/lib/pkgconfig/corral.pc", "usr/include/corral/queue.h",
            "lib/systemd/system/corrald.service", "lib/systemd/system/corrald@.service",
            "usr/lib/sysusers.d/corral.conf", "usr/lib/tmpfiles.d/corral.conf",
            "etc/corral/corral.conf", "usr/share/man/man1/corralctl.1",
            "usr/share/man/man5/corral.conf.5", "usr/share/man/man8/corrald.8",
            "usr/share/man/man8/corral-worker.8"]
    for path in want:
        assert os.path.lexists(installed / path), path
    assert oct(os.stat(installed / "etc/corral/corral.conf").st_mode & 0o777) == "0o640"
    assert os.access(installed / "usr/bin/corrald", os.X_OK)
    unit = (installed / "lib/systemd/system/corrald.service").read_text()
    assert "ExecStart=/usr/bin/corrald -c /etc/corral/corral.conf" in unit
    assert "@bindir@" not in unit


@pytest.mark.skipif(shutil.which("man") is None, reason="no man")
@pytest.mark.parametrize("page", ["man1/corralctl.1", "man5/corral.conf.5", "man8/corrald.8",
                                  "man8/corral-worker.8"])
def test_man_pages_render_without_warnings(installed, page):
    res = subprocess.run(["man", "--warnings", "-l", "-Tutf8",
                          str(installed / "usr/share/man" / page)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip(), res.stderr
    assert "warning" not in res.stderr, res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", ["corrald.service", "corrald@.service"])
def test_units_verify(installed, build_dir, tmp_path, unit):
    text = (installed / "lib/systemd/system" / unit).read_text()
    # verify checks that ExecStart exists: point it at this build.
    text = text.replace("/usr/bin/corrald", os.path.join(build_dir, "corrald"))
    name = unit.replace("@.service", "@test.service")
    path = tmp_path / name
    if "@" in unit:
        (tmp_path / unit).write_text(text)
        os.symlink(tmp_path / unit, path)
    else:
        path.write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_hardening_exposure_is_at_most_2(installed):
    res = subprocess.run(["systemd-analyze", "security", "--offline=true",
                          str(installed / "lib/systemd/system/corrald.service")],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for corrald.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    print(f"systemd-analyze security exposure: {m.group(1)}")
    assert float(m.group(1)) <= 2.0
