"""Train (or take from the cache) the embedded model's probe banks and ship them with the package.

    python tools/ship_banks.py            # the 10 controlled and the 10 naive banks

The book's chapters and ``evaluate`` (whose w/o-CCD ablation steers with the naive banks)
read these instead of training 20 banks on a 2-core CPU, so that the shipped table does
not depend on banks trained on one machine; ``conva-nb probe`` still trains from scratch, and a test checks that it
reproduces a shipped bank. A bank's directory name carries its data fingerprint, so an
edit of the pairs makes the shipped bank invisible until this script is run again.
"""
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conva_nb.models import load_model  # noqa: E402
from conva_nb.probes import SHIPPED_BANKS, get_bank, shipped_bank_path  # noqa: E402
from conva_nb.values import VALUE_NAMES  # noqa: E402

if __name__ == "__main__":
    model, tok = load_model("embedded")
    target = SHIPPED_BANKS / "embedded"
    keep = set()
    for value, data in [(v, "controlled") for v in VALUE_NAMES] + [(v, "naive") for v in VALUE_NAMES]:
        dest = shipped_bank_path(model, value, data)
        if not (dest / "bank.json").exists():
            bank = get_bank(model, tok, value, data=data, progress=False)
            bank.save(dest)
        keep.add(dest.name)
        print(value, data, "->", dest.relative_to(SHIPPED_BANKS.parent))
    for old in target.iterdir():
        if old.is_dir() and old.name not in keep:
            shutil.rmtree(old)
            print("removed stale", old.name)
