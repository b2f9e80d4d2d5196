"""Loads corral_enqueue_many (clients/enqueue_many.lua) into a test's Redis
until it is part of the Function library: the fragment is appended to the
library's source, whose helpers it uses. Once the library registers
corral_enqueue_many itself, load() changes nothing."""
import os

from conftest import LUA, REPO

FRAGMENT = os.path.join(REPO, "clients", "enqueue_many.lua")


def library_source():
    """The library as the tests load it, with corral_enqueue_many."""
    with open(LUA) as f:
        src = f.read()
    if "'corral_enqueue_many'" not in src:
        with open(FRAGMENT) as f:
            src += "\n" + f.read()
    return src


def load(client):
    """FUNCTION LOAD REPLACE of library_source() (the r fixture loaded the
    library without the fragment)."""
    client.execute_command("FUNCTION", "LOAD", "REPLACE", library_source())
