import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def shipped_results_untouched():
    """No test may rewrite the package's shipped settings or table (a CLI run without
    --out writes there): compare their bytes before and after the session."""
    d = Path(__file__).resolve().parents[1] / "conva_nb" / "settings"
    before = {p.name: p.read_bytes() for p in sorted(d.glob("*.json"))}
    yield
    after = {p.name: p.read_bytes() for p in sorted(d.glob("*.json"))}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests rewrote shipped files in conva_nb/settings: {changed}"


@pytest.fixture(scope="session")
def embedded():
    """The real embedded model and tokenizer (converted once into the user cache)."""
    from conva_nb.models import load_model
    return load_model("embedded")


@pytest.fixture(scope="session")
def gguf_embedded():
    """The embedded model loaded straight from its GGUF file (slow path)."""
    from conva_nb.models import load_embedded_from_gguf
    return load_embedded_from_gguf()


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty CONVA_NB_CACHE for tests that check caching."""
    monkeypatch.setenv("CONVA_NB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def touche_dir():
    d = Path(os.environ.get("CONVA_NB_TOUCHE") or SHARED / "data" / "touche23")
    if not (d / "arguments-training.tsv").exists():
        pytest.skip("Touché23 data not found beside the checkout (../shared/data/touche23)")
    return d
