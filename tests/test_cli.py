import json
import subprocess
import sys

import pytest

from conva_nb.values import VALUE_NAMES


def run(*args):
    return subprocess.run([sys.executable, "-m", "conva_nb", *args], capture_output=True,
                          text=True, timeout=600)


def test_values_json():
    r = run("values", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [v["name"] for v in doc["values"]] == list(VALUE_NAMES)
    assert set(doc["values"][0]) >= {"name", "definition", "angle_deg", "group"}


@pytest.mark.parametrize("bad", ["kindness", "securityy", "power2"])
def test_unknown_value_exits_2_listing_valid(bad):
    r = run("probe", "--value", bad)
    assert r.returncode == 2
    assert bad in r.stderr
    assert all(name in r.stderr for name in VALUE_NAMES)
    assert r.stdout == ""


def test_unknown_subcommand_and_option():
    assert run("frobnicate").returncode == 2
    assert run("values", "--nope").returncode == 2
