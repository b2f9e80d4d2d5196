"""corralctl enqueue --many: one JSON payload per line on stdin, sent with
corral_enqueue_many in batches of up to 1,000 (libcorral's
corral_queue_enqueue_many), the ids printed one per line in order; a bad
line refuses its batch and names the line (docs/protocol.md, man/corralctl.1)."""
import json
import subprocess

import pytest

from conftest import binary_path, get_job


@pytest.fixture
def conf(tmp_path, redis_server):
    path = tmp_path / "corral.conf"
    path.write_text(redis_server.redis_section() + """
[queue demo]
handler = echo
priorities = high, normal, low
max_payload = 100
""")
    return str(path)


@pytest.fixture
def ctl(build_dir, conf):
    exe = binary_path(build_dir, "corralctl")

    def run(*args, stdin=b""):
        res = subprocess.run([exe, "-c", conf, *args], input=stdin, capture_output=True,
                             timeout=60)
        return res.returncode, res.stdout.decode(), res.stderr.decode()

    return run


def lines(payloads):
    return b"".join(p + b"\n" for p in payloads)


def test_enqueue_many_prints_one_id_per_line_in_order_in_batches_of_1000(ctl, r):
    # the first call finds no queue and declares it from the config
    assert ctl("enqueue", "demo", "--many", stdin=b"{}\n")[:2] == (0, "1\n")
    r.config_resetstat()
    payloads = [json.dumps({"n": i}).encode() for i in range(2500)]
    rc, out, err = ctl("enqueue", "demo", "--many", stdin=lines(payloads))
    assert rc == 0, err
    ids = out.split()
    assert ids == [str(i) for i in range(2, 2502)]
    for i in (0, 999, 1000, 2499):
        assert json.loads(get_job(r, "demo", ids[i])["payload"]) == {"n": i}
    assert r.info("commandstats")["cmdstat_fcall"]["calls"] == 3  # 1000 + 1000 + 500
    assert r.llen("corral:{demo}:q:1") == 2501


def test_enqueue_many_applies_the_options_to_every_job(ctl, r):
    rc, out, err = ctl("enqueue", "demo", "--many", "--priority", "high", "--max-attempts", "2",
                       "--delay", "1m", stdin=b'{"a": 1}\n[2]\n"three"')  # no final newline
    assert rc == 0, err
    ids = out.split()
    assert len(ids) == 3
    for jid in ids:
        j = get_job(r, "demo", jid)
        assert (j["priority"], j["max_attempts"], j["state"]) == ("high", 2, "scheduled")
    assert get_job(r, "demo", ids[2])["payload"] == '"three"'


def test_a_line_that_is_not_json_text_refuses_its_batch_naming_the_line(ctl, r):
    payloads = [b"1"] * 1500
    payloads[1202] = b'"caf\xe9"'  # not UTF-8: refused before its batch is sent
    rc, out, err = ctl("enqueue", "demo", "--many", stdin=lines(payloads))
    assert rc == 1
    assert out.split() == [str(i) for i in range(1, 1001)]  # the first batch stays
    assert err.strip() == ('corralctl: stdin line 1203: queue "demo": payload is not valid JSON '
                           '(invalid UTF-8 at byte 4); lines 1001-1203 not enqueued')
    assert r.get("corral:{demo}:seq") == "1000"


def test_an_empty_line_refuses_its_batch_naming_the_line(ctl, r):
    rc, out, err = ctl("enqueue", "demo", "--many", stdin=b"1\n2\n\n3\n")
    assert (rc, out) == (1, "")
    assert err.strip() == ("corralctl: stdin line 3 is empty: give one JSON payload per line; "
                           "lines 1-3 not enqueued")
    assert r.get("corral:{demo}:seq") is None


def test_a_line_the_library_refuses_refuses_its_batch_with_the_batchs_lines(ctl, r):
    payloads = [b"1"] * 1600
    payloads[1501] = b"{not json"
    payloads[1502] = b"x" * 101
    rc, out, err = ctl("enqueue", "demo", "--many", stdin=lines(payloads))
    assert rc == 1
    assert len(out.split()) == 1000
    assert err.strip() == ('corralctl: stdin lines 1001-1600 not enqueued (payload k is line '
                           '1000+k): queue "demo": payload 502 of 600 is not valid JSON')
    assert r.get("corral:{demo}:seq") == "1000"
    assert r.llen("corral:{demo}:q:1") == 1000


def test_a_payload_over_max_payload_names_its_place_in_the_batch(ctl, r):
    rc, out, err = ctl("enqueue", "demo", "--many", stdin=b"1\n" + b'"' + b"x" * 100 + b'"\n')
    assert (rc, out) == (1, "")
    assert err.strip() == ('corralctl: stdin lines 1-2 not enqueued (payload k is line 0+k): '
                           'queue "demo": payload 2 of 2 is 102 bytes, limit is 100 (max_payload)')


def test_bad_options_refuse_the_first_batch_with_the_librarys_message(ctl, r):
    rc, out, err = ctl("enqueue", "demo", "--many", "--priority", "urgent", stdin=b"1\n")
    assert (rc, out) == (1, "")
    assert 'unknown priority "urgent" (known: high, normal, low, or 0-2)' in err


def test_empty_stdin_enqueues_nothing(ctl, r):
    rc, out, err = ctl("enqueue", "demo", "--many", stdin=b"")
    assert (rc, out, err) == (0, "", "")
    assert r.get("corral:{demo}:seq") is None


@pytest.mark.parametrize("args, message", [
    (["--many", "--wait"], "enqueue: --many and --wait do not go together"),
    (["--many", "{}"], "enqueue --many reads its payloads from stdin, one per line: give no "
                       "PAYLOAD"),
])
def test_many_with_wait_or_a_payload_argument_is_bad_usage(ctl, args, message):
    rc, out, err = ctl("enqueue", "demo", *args, stdin=b"1\n")
    assert rc == 2 and message in err
