"""Small Sphinx fixes for this book (loaded through ``local_extensions`` in _config.yml).

Some extensions that Jupyter Book loads add their inline scripts twice per page with the
Sphinx version we use: once through the registry (file name ``None``) and once through the
builder (file name ``''``). For sphinx-thebe the second ``const THEBE_JS_URL = …`` is a
JavaScript SyntaxError in every page's console. This extension drops such duplicates
before a page is rendered. Entries count as duplicates only when file name (``None`` and
``''`` both meaning "inline"), priority and all attributes, inline body included, are
equal, so nothing distinct is ever removed.

It also writes the students' edition (:mod:`conva_nb.course`) into the built HTML's
``_static/`` once the build has finished, so the course guide's download link works.
"""
from __future__ import annotations

import os


def _key(asset):
    filename = getattr(asset, "filename", asset)
    attributes = getattr(asset, "attributes", {}) or {}
    return (os.fspath(filename or ""), getattr(asset, "priority", 500),
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        files = context.get(key)
        if not files:
            continue
        seen, unique = set(), []
        for asset in files:
            k = _key(asset)
            if k not in seen:
                seen.add(k)
                unique.append(asset)
        if len(unique) != len(files):
            context[key] = unique


def _student_edition(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    from pathlib import Path

    from conva_nb.course import write_student_edition
    out = Path(app.outdir) / "_static" / "student"
    z = write_student_edition(Path(app.srcdir) / "book", out)
    z.replace(Path(app.outdir) / "_static" / z.name)


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    app.connect("build-finished", _student_edition)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
