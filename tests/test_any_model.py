"""Every chapter runs in quick mode on a model the package has never seen.

The model is a tiny random-init Llama saved to a local directory: no shipped banks, no
settings file, no hub. Only the model-independent caches (MiniLM sentence embeddings, the
Touché23 judge and gate detector) are shared with the suite's own cache, so that they are
built once per run, as a reader who ran the book before would have them; everything the
model touches starts empty. What the GPU appendix promises (change ``MODEL``, or set
``CONVA_MODEL``, and every chapter runs) is checked here, chapter by chapter, with one
cache shared by all of them, as a reader's would be.
"""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conva_nb.cache import cache_dir

from book_helpers import ROOT, build_env, chapter_files
from tiny import save_reader_model

CHAPTERS = chapter_files()
MODEL_FREE = ("embeddings", "judges", "detectors")   # cache parts no model enters


def shipped() -> set:
    """Every file of the package's shipped settings and banks."""
    return {p for d in ("settings", "banks") for p in (ROOT / "conva_nb" / d).rglob("*")}


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A local model directory and the environment a reader's kernel would have."""
    root = tmp_path_factory.mktemp("any_model")
    save_reader_model(root / "model")
    shared = cache_dir()                      # the suite's cache (built here if absent)
    for kind in MODEL_FREE:
        (shared / kind).mkdir(parents=True, exist_ok=True)
        (root / "cache").mkdir(exist_ok=True)
        (root / "cache" / kind).symlink_to(shared / kind, target_is_directory=True)
    env = {**build_env(), "CONVA_MODEL": str(root / "model"), "CONVA_QUICK": "1",
           "CONVA_NB_CACHE": str(root / "cache")}
    return root / "model", env


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_on_an_unseen_model(reader, chapter, monkeypatch):
    model_dir, env = reader
    for k, v in env.items():
        monkeypatch.setenv(k, v)            # the kernel inherits this process's environment
    path = ROOT / f"{chapter}.ipynb"
    nb = nbformat.read(path, as_version=4)
    before = shipped()
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert f"model {model_dir}" in text, "the chapter did not load the model it was given"
    assert "quick mode" in text
    new = shipped() - before
    assert not new, f"the chapter wrote into the package: {sorted(new)}"
