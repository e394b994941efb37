"""The book: it builds warning-free with every notebook executed, every chapter page has
the parts the conventions require, and every page works in a real (headless) browser.

The build is ``jupyter-book build . -W -n --keep-going`` from the repository root, exactly
as ``make book`` runs it; it reuses ``_build/.jupyter_cache``, so after a ``make book`` only
changed notebooks are executed again. ``CONVA_BOOK_TOC=/path/toc.yml`` builds another table
of contents (for developing a subset of chapters).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from book_helpers import (
    COLAB,
    HTML,
    ROOT,
    StaticServer,
    build_book,
    chapter_files,
    git_tracked,
    read_page,
    toc_files,
)

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def built_book() -> Path:
    proc = build_book()
    if proc.returncode != 0:
        log = (proc.stdout + "\n" + proc.stderr)[-8000:]
        pytest.fail(f"jupyter-book build exited with {proc.returncode}; log tail:\n{log}",
                    pytrace=False)
    assert (HTML / "index.html").is_file()
    return HTML


def test_toc_lists_the_chapters_in_order():
    chapters = chapter_files(ROOT / "_toc.yml")
    assert chapters == sorted(chapters)
    assert [c.split("/")[1][:2] for c in chapters] == [f"{i:02d}" for i in range(9)]
    for f in toc_files(ROOT / "_toc.yml"):
        assert (ROOT / f"{f}.ipynb").is_file() or (ROOT / f"{f}.md").is_file(), f


@pytest.mark.parametrize("chapter", chapter_files())
def test_chapter_page_structure(built_book, chapter):
    page = read_page(chapter)
    goals = [t for t in page.admonition_titles if t.lower().startswith("learning goals")]
    assert goals, f"{chapter}: no 'Learning goals' admonition"
    assert re.search(r"about \d+(\s*[–-]\s*\d+)? minutes", goals[0]), \
        f"{chapter}: learning goals give no estimated time: {goals[0]!r}"
    assert any(h.startswith("Summary") for h in page.headings), f"{chapter}: no Summary"
    assert any(h.startswith("Exercises") for h in page.headings), f"{chapter}: no Exercises"
    assert len(page.exercises) >= 2, f"{chapter}: {len(page.exercises)} exercises, need 2"
    missing = [e for e in page.exercises if e not in page.solution_targets]
    assert not missing, f"{chapter}: exercises without a solution: {missing}"
    assert page.output_images, f"{chapter}: no figure among the cell outputs"
    for src in page.output_images:
        assert (HTML / chapter).parent.joinpath(src).resolve().is_file(), src
    assert page.code_cells >= 2, f"{chapter}: {page.code_cells} code cells"
    # executed: most code cells show output (setup/import cells may print nothing)
    assert page.code_cells_with_output >= page.code_cells / 2, \
        f"{chapter}: only {page.code_cells_with_output} of {page.code_cells} cells have output"
    assert page.tracebacks == 0, f"{chapter}: a cell output holds a traceback"
    warned = [t for t in page.stderr_texts if re.search(r"\w+Warning\b", t)]
    assert not warned, f"{chapter}: Python warnings in cell output: {warned[:2]}"


EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}(.*)$", re.M)
LABEL = re.compile(r"difficulty [1-3]/3 · importance [1-3]/3 · \d+ min")
MAX_CODE_COLUMNS = 88          # wider lines run behind the page's right edge


@pytest.mark.parametrize("chapter", chapter_files())
def test_exercise_labels_and_code_width(chapter):
    """Every exercise states difficulty, importance and minutes (ARENA's labels); no code
    line of the notebook is wider than the page shows."""
    import nbformat
    nb = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    titles = [m.group(2).strip() for m in EXERCISE.finditer(md)]
    assert len(titles) >= 2, f"{chapter}: {len(titles)} exercises"
    unlabelled = [t for t in titles if not LABEL.fullmatch(t)]
    assert not unlabelled, f"{chapter}: exercises without 'difficulty d/3 · importance " \
                           f"i/3 · N min': {unlabelled}"
    wide = [(i, len(line)) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for line in c.source.splitlines() if len(line) > MAX_CODE_COLUMNS]
    assert not wide, f"{chapter}: code lines over {MAX_CODE_COLUMNS} columns (cell, width): {wide}"


def _chrome(user_data_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={user_data_dir}",
                "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


_IMAGES_LOADED = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
Promise.all(imgs.map(i => i.complete ? null :
    new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })))
  .then(() => done(imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.currentSrc || i.src)));
"""


def test_every_page_in_a_real_browser(built_book):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is missing: run `make browser` (apt-get install chromium "
                    "chromium-driver)", pytrace=False)
    pages = sorted(p.relative_to(built_book).as_posix() for p in built_book.rglob("*.html")
                   if not p.relative_to(built_book).parts[0].startswith("_"))
    assert "index.html" in pages
    for f in toc_files():
        assert f"{f}.html" in pages, f"{f} was not built"
    tracked = git_tracked()
    problems: list[str] = []
    colab_links: dict[str, list[str]] = {}
    profile = tempfile.mkdtemp(prefix="conva-chromium-")
    driver = _chrome(profile)
    try:
        driver.set_script_timeout(30)
        with StaticServer(built_book) as server:
            for page in pages:
                driver.get(f"{server.url}/{page}")
                broken = driver.execute_async_script(_IMAGES_LOADED)
                problems += [f"{page}: image not loaded: {src}" for src in broken]
                for entry in driver.get_log("browser"):
                    if entry["level"] == "SEVERE":
                        problems.append(f"{page}: console: {entry['message']}")
                links = [a.get_attribute("href") for a in
                         driver.find_elements("css selector", "a[href*='colab.research.google']")]
                colab_links[page] = links
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    for chapter in chapter_files():
        links = colab_links.get(f"{chapter}.html", [])
        if not links:
            problems.append(f"{chapter}: no Colab launch link")
    for page, links in colab_links.items():
        for href in links:
            if not href.startswith(COLAB) or not href.endswith(".ipynb"):
                problems.append(f"{page}: Colab link {href} is not {COLAB}<path>.ipynb")
                continue
            path = href[len(COLAB):]
            if not (ROOT / path).is_file():
                problems.append(f"{page}: Colab link to {path}, which does not exist")
            elif path not in tracked:
                problems.append(f"{page}: Colab link to {path}, which git does not track")
    assert not problems, "\n".join(problems)
