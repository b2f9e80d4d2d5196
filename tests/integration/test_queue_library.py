"""The shape of the Function library's source (queue/lua/): a few modules
named after their duties, concatenated in the order of queue/lua/ORDER into
the one library that is loaded, the same for the programs (the Makefile's
build/gen/corral.lua) and for the tests (conftest.LUA); each module says
which keys it touches, each function its KEYS, ARGV and reply."""
import os
import re

import pytest

from conftest import LUA, REPO

LUA_DIR = os.path.join(REPO, "queue", "lua")


def modules():
    with open(os.path.join(LUA_DIR, "ORDER")) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_every_module_is_listed_once_and_none_is_over_700_lines():
    names = modules()
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(f for f in os.listdir(LUA_DIR) if f.endswith(".lua"))
    for name in names:
        with open(os.path.join(LUA_DIR, name)) as f:
            lines = f.read().count("\n")
        assert lines <= 700, f"{name} has {lines} lines"


def test_each_module_opens_with_its_duty_and_says_where_its_keys_come_from():
    for name in modules():
        with open(os.path.join(LUA_DIR, name)) as f:
            head = f.read().split("\n\n", 1)[0]
        assert head.startswith(f"-- {name}: "), name
        if name != "api.lua":
            assert re.search(r"[Kk]eys", head), f"{name}: its header names no keys"


def test_each_registered_function_has_a_header_with_its_keys_and_reply():
    text = open(LUA).read()
    names = re.findall(r"redis\.register_function\{?\(?(?:function_name = )?'(corral_\w+)'", text)
    assert len(names) == 30
    for name in names:
        # a local function of its name, or (gate.lua: no more locals) a
        # module table's function under a header naming it
        m = re.search(r"((?:^--.*\n)+)(?:local [A-Z_]+ = .*\n)*local function " + name + r"\(",
                      text, re.M) or \
            re.search(r"(^-- " + name + r":.*\n(?:^--.*\n)*)function \w+\.\w+\(", text, re.M)
        assert m, f"{name} has no header comment"
        header = m.group(1)
        assert name.split("/")[0] in header, f"{name}: header does not name it"
        assert ("KEYS[1]" in header or "no keys" in header) and "->" in header, \
            f"{name}: header lacks KEYS or the reply:\n{header}"


def test_the_tests_load_the_library_the_programs_embed(build_dir):
    built = os.path.join(build_dir, "gen", "corral.lua")
    if not os.path.exists(built):
        pytest.skip("build/gen/corral.lua not built (make)")
    assert open(built).read() == open(LUA).read(), \
        "rebuild (make): the embedded library differs from queue/lua/"


def test_the_version_is_read_from_one_place():
    with open(os.path.join(LUA_DIR, "VERSION")) as f:
        version = int(f.read())
    assert re.search(r"^local LIB_VERSION = (\d+)$", open(LUA).read(), re.M).group(1) == \
        str(version)
    for name in modules():  # no module states a version of its own
        assert not re.search(r"^local LIB_VERSION", open(os.path.join(LUA_DIR, name)).read(),
                             re.M), name
