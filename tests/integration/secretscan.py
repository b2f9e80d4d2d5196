"""The suite-wide secret check of docs/bad-input.md: no API key or password
given to the programs under test may appear in anything they write. After
each test that used the session's redis-server, every key and value in it
is read (with the commands of each type, so nothing is hidden by RDB
compression); after each test with a tmp_path, the logs it wrote (*.log)
are read; at the end of the session every *.log under pytest's base temp
directory is read once more, for logs written outside tmp_path.

What is looked for: TEST_SECRET_PREFIX (every test secret should start
with it), the legacy test keys listed in LEGACY_SECRETS, and the Redis ACL
password of the tcp-acl mode -- each raw, and also after undoing percent-,
JSON- and HTML-escaping and upper/lower case, the ways a service or a
program may re-encode what it echoes.

conftest.py enables it with:

    from secretscan import pytest_sessionfinish, secret_scan  # noqa: F401,E402
"""
import functools
import html
import os
import re
import urllib.parse

import pytest

# The one prefix every secret a test hands to a program starts with (API
# keys in key files, values of credential headers, passwords).
TEST_SECRET_PREFIX = "sk-corraltest-"

# Test secrets written before the prefix existed; kept until they use it.
LEGACY_SECRETS = ("sk-test-7c1f9e", "sk-breaker-test", "sk-chaos")

# Files a test writes on purpose with a secret in them: key files,
# password files, configs (a credential header is written in the config).
# Only logs are scanned, so these are never read; listed for the reader.
LOG_SUFFIXES = (".log",)

_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def _json_unescape(text):
    def one(m):
        if m.group(1) is not None:
            return chr(int(m.group(1), 16))
        return {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(m.group(2),
                                                                         m.group(2))
    return _JSON_ESCAPE.sub(one, text)


@functools.lru_cache(maxsize=None)
def needles():
    """The strings whose presence is a leak, lower-cased."""
    out = [TEST_SECRET_PREFIX] + list(LEGACY_SECRETS)
    try:
        from conftest import ACL_PASSWORD
        out.append(ACL_PASSWORD)
    except ImportError:
        pass
    return tuple(n.lower() for n in out)


def views(text):
    """text and what it reads as after undoing the usual escapings, twice
    (a JSON string inside a URL, ...)."""
    if "%" not in text and "\\" not in text and "&" not in text:
        return [text.lower()]  # nothing escaped: the text is its only view
    seen = [text]
    for _ in range(2):
        cur = seen[-1]
        dec = html.unescape(_json_unescape(urllib.parse.unquote(cur)))
        if dec == cur:
            break
        seen.append(dec)
    return [v.lower() for v in seen]


def find_leaks(text, where):
    """A list of "where: secret" for each test secret found in text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = []
    for n in needles():
        for v in views(text):
            i = v.find(n)
            if i >= 0:
                found.append(f"{where}: {n!r} in ...{v[max(0, i - 60):i + 60]!r}...")
                break
    return found


def scan_redis(client):
    """Leaks in every key name and value of a Redis server (all types read
    with their own commands; nothing is decoded from RDB). Keys are read a
    thousand at a time, each step one pipeline (a test that leaves 10,000
    jobs costs a few round trips, not 20,000)."""
    found = []
    keys = []

    def scan_batch():
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = [k.decode() if isinstance(k, bytes) else k for k in pipe.execute()]
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(keys, kinds):
            if kind == "string":
                pipe.get(key)
            elif kind == "hash":
                pipe.hgetall(key)
            elif kind == "list":
                pipe.lrange(key, 0, -1)
            elif kind == "set":
                pipe.smembers(key)
            elif kind == "zset":
                pipe.zrange(key, 0, -1)
            elif kind == "stream":
                pipe.xrange(key)
            else:
                pipe.echo("")  # gone meanwhile, or a type with no values to read
        for key, kind, val in zip(keys, kinds, pipe.execute()):
            if kind == "string":
                vals = [val]
            elif kind == "hash":
                vals = [x for kv in val.items() for x in kv]
            elif kind in ("list", "set", "zset"):
                vals = list(val)
            elif kind == "stream":
                vals = [str(e) for e in val]
            else:
                vals = []
            name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            found.extend(find_leaks(name, f"redis key name {name!r}"))
            for v in vals:
                if v is not None:
                    found.extend(find_leaks(v, f"redis {kind} {name!r}"))

    for key in client.scan_iter(count=1000):
        keys.append(key)
        if len(keys) == 1000:
            scan_batch()
            keys = []
    if keys:
        scan_batch()
    return found


def scan_logs(top):
    """Leaks in every *.log file under top."""
    found = []
    for dirpath, _, files in os.walk(top):
        for f in files:
            if f.endswith(LOG_SUFFIXES):
                path = os.path.join(dirpath, f)
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                found += find_leaks(data, path)
    return found


@pytest.fixture(autouse=True)
def secret_scan(request):
    """After each test: its Redis data and its logs hold no test secret.
    The fixtures are fetched now, so they are torn down after this check."""
    names = request.fixturenames
    server = request.getfixturevalue("redis_server") if "redis_server" in names else None
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in names else None
    yield
    found = []
    if server is not None:
        if server.running():
            client = server.client()
            try:
                found += scan_redis(client)
            finally:
                client.close()
        found += scan_logs(server.dir)
    if tmp is not None:
        found += scan_logs(str(tmp))
    if found:
        pytest.fail("a test secret leaked:\n  " + "\n  ".join(found[:20]), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """Every log under pytest's base temp directory, once, at the end."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return
    found = scan_logs(str(base))
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "secret scan: a test secret leaked into a log:\n  " + "\n  ".join(found[:20])
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = 1
