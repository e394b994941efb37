import json
import signal
import subprocess
import sys
import time

import pytest

from conva_nb.generation import generate_pairs, parse_reply
from conva_nb.local_server import ScriptedChatServer


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_parse_reply_schema():
    assert parse_reply('{"positive": "She gave her seat to an old man on the bus."}',
                       "positive").startswith("She gave")
    for bad in ['{not json', '["a"]', '{"positive": 3}', '{"positive": "too short"}',
                '{"positive": "a long enough sentence here ok", "extra": 1}']:
        with pytest.raises(ValueError):
            parse_reply(bad, "positive")


def test_generation_retries_through_faults(tmp_path):
    out = tmp_path / "pairs.jsonl"
    with ScriptedChatServer(faults=["429", "malformed", "500", "ok", "malformed"]) as srv:
        res = generate_pairs("benevolence", 6, out, base_url=srv.base_url, model_name="scripted",
                             backoff=0.01, progress=False)
    rows = _rows(out)
    assert res["written"] == 6 and len(rows) == 6
    assert res["usage"]["retries"] == 4
    assert res["usage"]["errors"] == {"RateLimitError": 1, "InternalServerError": 1,
                                      "JSONDecodeError": 2}
    assert len({r["id"] for r in rows}) == 6
    for r in rows:
        assert set(r) >= {"id", "value", "persona", "scenario", "structure", "positive",
                          "negative", "split"}
        assert r["value"] == "benevolence" and r["positive"] != r["negative"]
        assert r["persona"] in r["positive"] and r["scenario"] in r["negative"]


def test_generation_gives_up_with_clear_error(tmp_path):
    from conva_nb.generation import GenerationError
    with ScriptedChatServer(faults=["500"] * 10) as srv:
        with pytest.raises(GenerationError, match="3 attempts failed"):
            generate_pairs("power", 2, tmp_path / "x.jsonl", base_url=srv.base_url,
                           max_retries=2, backoff=0.01, progress=False)


def test_killed_run_resumes_to_exactly_n(tmp_path):
    """A real CLI run is killed mid-way (and its last line cut short); the re-run completes
    the file to exactly N unique pairs."""
    out = tmp_path / "pairs.jsonl"
    n = 12
    with ScriptedChatServer(delay=0.05) as srv:
        cmd = [sys.executable, "-m", "conva_nb", "generate-pairs", "--value", "tradition",
               "--n", str(n), "--out", str(out), "--base-url", srv.base_url, "--json",
               "--backoff", "0.01"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = _rows(out)
        assert 4 <= len(first) < n
        with out.open("a") as fh:  # as if killed in the middle of a write
            fh.write('{"id": "gen-tradition-9999", "value": "trad')
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = _rows(out)
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    assert len({r["positive"] for r in rows}) == n
    assert rows[: len(first)] == first
    assert doc["written"] == n - len(first) and doc["out"] == str(out.resolve())
    assert "prompt" in r.stderr and "completion tokens" in r.stderr
