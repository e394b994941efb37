"""Helpers for tests/test_book.py: building the book, reading its HTML, serving it."""
from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
COLAB = "https://colab.research.google.com/github/conva-book/conva-book/blob/main/"
CHAPTER = re.compile(r"^book/\d\d_[a-z_]+$")


def toc_path() -> Path:
    """The table of contents the build uses (``CONVA_BOOK_TOC`` overrides it for development)."""
    return Path(os.environ.get("CONVA_BOOK_TOC", ROOT / "_toc.yml"))


def toc_files(toc: Path | None = None) -> list[str]:
    """Every file of the table of contents, without extension, in order."""
    data = yaml.safe_load((toc or toc_path()).read_text())
    files = [data["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
    for part in data.get("parts", []):
        walk(part.get("chapters"))
    walk(data.get("chapters"))
    return files


def chapter_files(toc: Path | None = None) -> list[str]:
    return [f for f in toc_files(toc) if CHAPTER.match(f)]


def build_command() -> list[str]:
    """Exactly what ``make book`` runs (plus ``--toc`` when CONVA_BOOK_TOC is set)."""
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", ".", "-W", "-n", "--keep-going"]
    if "CONVA_BOOK_TOC" in os.environ:
        cmd += ["--toc", os.environ["CONVA_BOOK_TOC"]]
    return cmd


def build_env() -> dict:
    """The build's environment: offline, and chapters in quick mode unless
    ``CONVA_BOOK_FULL=1`` (``make book`` always runs in full; these tests check what the
    pages hold, not the numbers, and the cold full build was the largest part of the test
    run). Outputs already in ``_build/.jupyter_cache`` are reused whichever mode wrote them."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if env.get("CONVA_BOOK_FULL") != "1":
        env.setdefault("CONVA_QUICK", "1")
    touche = ROOT.parent / "shared" / "data" / "touche23"
    if "CONVA_NB_TOUCHE" not in env and (touche / "arguments-training.tsv").is_file():
        env["CONVA_NB_TOUCHE"] = str(touche)
    return env


def build_book(timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(build_command(), cwd=ROOT, env=build_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


class Page(HTMLParser):
    """The few things the tests read from a built page, collected in one pass."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, set, dict]] = []
        self.admonition_titles: list[str] = []
        self.headings: list[str] = []
        self.exercises: list[str] = []          # ids of exercise admonitions
        self.solution_targets: list[str] = []   # exercise ids each solution links to
        self.output_images: list[str] = []      # <img> inside cell outputs
        self.code_cells = 0
        self.code_cells_with_output = 0
        self.tracebacks = 0
        self.stderr_texts: list[str] = []
        self._capture: list | None = None
        self._capture_depth = 0
        self._capture_kind = ""
        self.feed(text)

    def _classes(self, attrs):
        return set((attrs.get("class") or "").split())

    def _inside(self, cls: str) -> bool:
        return any(cls in c for _, c, _ in self.stack)

    def handle_starttag(self, tag, attrs_list):
        attrs = dict(attrs_list)
        cls = self._classes(attrs)
        void = tag in ("img", "br", "hr", "meta", "link", "input", "source", "col", "wbr")
        if tag == "div" and {"cell", "docutils"} <= cls:  # myst-nb code cell container
            self.code_cells += 1
        if tag == "div" and "cell_output" in cls:
            self.code_cells_with_output += 1
        if tag == "div" and "traceback" in cls:
            self.tracebacks += 1
        if "exercise" in cls and "admonition" in cls and attrs.get("id"):
            self.exercises.append(attrs["id"])
        if tag == "a" and self._inside("solution") and (attrs.get("href") or "").startswith("#"):
            self.solution_targets.append(attrs["href"][1:])
        if tag == "img" and self._inside("cell_output"):
            self.output_images.append(attrs.get("src", ""))
        if not void:
            self.stack.append((tag, cls, attrs))
        if self._capture is not None and not void:
            self._capture_depth += 1
        elif tag == "p" and "admonition-title" in cls:
            self._start_capture("admonition")
        elif re.fullmatch(r"h[1-6]", tag):
            self._start_capture("heading")
        elif tag == "div" and "stderr" in cls:
            self._start_capture("stderr")

    def _start_capture(self, kind):
        self._capture, self._capture_depth, self._capture_kind = [], 1, kind

    def handle_endtag(self, tag):
        if self._capture is not None:
            self._capture_depth -= 1
            if self._capture_depth == 0:
                text = " ".join("".join(self._capture).split())
                {"admonition": self.admonition_titles, "heading": self.headings,
                 "stderr": self.stderr_texts}[self._capture_kind].append(text)
                self._capture = None
        # pop to the matching tag (tolerates sloppy HTML)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self._capture is not None:
            self._capture.append(data)


def read_page(name: str) -> Page:
    return Page((HTML / f"{name}.html").read_text(encoding="utf-8"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class StaticServer:
    """``http.server`` over a directory on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_Quiet, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def git_tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return set(out.split("\n")) - {""}
