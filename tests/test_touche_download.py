"""`conva-nb get-touche` over real HTTP against a local copy of Zenodo's records API."""
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conva_nb.datasets import TOUCHE_FILES, DataError, download_touche, load_touche


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def zenodo(tmp_path, touche_dir):
    """A static server holding ``api/records/6814563`` and the two files (``corrupt`` flips
    one byte of the labels file after its checksum was recorded)."""
    root = tmp_path / "zenodo"
    (root / "api" / "records").mkdir(parents=True)
    (root / "files").mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    files = []
    for name in TOUCHE_FILES:
        data = (touche_dir / name).read_bytes()
        (root / "files" / name).write_bytes(data)
        files.append({"key": name, "size": len(data),
                      "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                      "links": {"self": f"{base}/files/{name}"}})
    (root / "api" / "records" / "6814563").write_text(json.dumps({"files": files}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def corrupt():
        p = root / "files" / TOUCHE_FILES[1]
        b = bytearray(p.read_bytes())
        b[100] ^= 1
        p.write_bytes(bytes(b))

    yield f"{base}/api/records", corrupt
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_loads(zenodo, tmp_path):
    api, _ = zenodo
    dest = download_touche(tmp_path / "t23", api=api, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(TOUCHE_FILES)
    data = load_touche(dest)
    assert len(data["texts"]) == 5393 and data["labels"].shape == (5393, 10)


def test_a_corrupted_file_is_rejected_and_nothing_kept(zenodo, tmp_path):
    api, corrupt = zenodo
    corrupt()
    with pytest.raises(DataError, match="labels-training.tsv from Zenodo fails its checksum"):
        download_touche(tmp_path / "t23", api=api, progress=False)
    assert not (tmp_path / "t23" / TOUCHE_FILES[1]).exists()
    assert not list((tmp_path / "t23").glob(".*.part"))


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "conva_nb", "get-touche", *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


def test_cli_states_the_licence_asks_consent_and_downloads(zenodo, tmp_path):
    api, _ = zenodo
    env = {**os.environ, "CONVA_NB_ZENODO_API": api, "CONVA_NB_CACHE": str(tmp_path / "c")}
    r = _cli(env=env)
    assert r.returncode == 2 and "CC BY-SA 4.0" in r.stderr and "--yes" in r.stderr
    assert not (tmp_path / "c" / "touche23").exists()
    r = _cli("--yes", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert Path(doc["path"]) == (tmp_path / "c" / "touche23").resolve()
    assert "CC BY-SA 4.0" in doc["licence"]
    env.pop("CONVA_NB_TOUCHE", None)
    code = "from conva_nb.datasets import load_touche; print(len(load_touche()['texts']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k != "CONVA_NB_TOUCHE"})
    assert out.stdout.strip() == "5393"          # found in the cache without a path
    code = ("import argparse; from conva_nb.cli import _touche; "
            "print(_touche(argparse.Namespace(touche=None)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k != "CONVA_NB_TOUCHE"})
    assert Path(out.stdout.strip()).resolve() == Path(doc["path"])   # so do the commands


def test_unreachable_zenodo_is_one_line(tmp_path):
    env = {**os.environ, "CONVA_NB_ZENODO_API": "http://127.0.0.1:9/api/records",
           "CONVA_NB_CACHE": str(tmp_path / "c")}
    r = _cli("--yes", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot read the Zenodo record http://127.0.0.1:9/api/records/6814563" in r.stderr
