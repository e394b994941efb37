"""Where the package keeps what it computes, and how it names and writes it.

One cache root (``$CONVA_NB_CACHE`` or the user cache directory), one fingerprint for
every cache key (:func:`fingerprint`), one append-only record store (:class:`RunStore`)
and atomic file writes (:func:`write_text_atomic`), so that an interrupted run never
leaves a half-written file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .errors import UsageError

__all__ = ["cache_dir", "fingerprint", "RunStore", "write_text_atomic", "write_json_atomic",
           "read_saved_json"]

FINGERPRINT_LEN = 24


def cache_dir() -> Path:
    """Root cache directory: ``$CONVA_NB_CACHE`` or the user cache dir (created if missing)."""
    env = os.environ.get("CONVA_NB_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir
        root = Path(user_cache_dir("conva_nb"))
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def fingerprint(obj) -> str:
    """The cache key of any JSON-able ``obj``: 24 hex digits of the SHA-256 of its JSON
    (keys sorted; objects JSON cannot hold are written with ``str``)."""
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:FINGERPRINT_LEN]


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a
    rename: readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.resolve()


def write_json_atomic(path, obj, indent: int = 1) -> Path:
    """:func:`write_text_atomic` of ``obj`` as JSON (non-JSON numbers written as floats)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=float,
                                              ensure_ascii=False) + "\n")


def read_saved_json(path, name: str, what: str) -> dict:
    """The JSON file ``name`` that ``what`` saves beside its arrays; a usage
    error naming the folder and the saver when it is not there."""
    f = Path(path) / name
    if not f.is_file():
        raise UsageError(f"{Path(path)}: no {name} (save {what} there first)")
    return json.loads(f.read_text())


STORE_FORMAT = {"format": "conva_nb records", "version": 2}


class RunStore:
    """Append-only JSON Lines store of computed records (``{"k": key, "v": value}``) after
    one header line (:data:`STORE_FORMAT`).

    A line cut short by an interrupted write is ignored on reading, so a killed run loses
    at most the batch it was writing. A file written by another version of the store is
    refused with a message naming it (its records may mean something else).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, object] = {}
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh):
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if n == 0:
                        if r != STORE_FORMAT:
                            raise UsageError(
                                f"{self.path}: a cache written by another version of conva_nb "
                                f"(header {str(r)[:80]!r}, expected {STORE_FORMAT}); delete "
                                "it (or point CONVA_NB_CACHE elsewhere) and run again")
                        continue
                    if isinstance(r, dict) and "k" in r:
                        self.data[r["k"]] = r["v"]
        else:
            self.path.write_text(json.dumps(STORE_FORMAT) + "\n", encoding="utf-8")

    def __contains__(self, k) -> bool:
        return k in self.data

    def __getitem__(self, k):
        return self.data[k]

    def put_many(self, items: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for k, v in items.items():
                fh.write(json.dumps({"k": k, "v": v}) + "\n")
            fh.flush()
        self.data.update(items)
