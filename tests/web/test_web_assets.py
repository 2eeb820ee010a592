"""Static checks of the dashboard's files: packaged, vendored as documented, CSP-clean."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import fairchild.web

WEB = Path(fairchild.web.__file__).parent
ROOT = Path(__file__).resolve().parents[2]


def test_package_data_covers_every_template_and_static_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["fairchild"]
    files = [p.relative_to(WEB.parent).as_posix() for d in ("static", "templates") for p in (WEB / d).rglob("*") if p.is_file()]
    assert len(files) > 15
    covered = {p.relative_to(WEB.parent).as_posix() for pat in patterns for p in WEB.parent.glob(pat)}
    uncovered = [f for f in files if f not in covered]
    assert uncovered == []


def test_vendored_libraries_match_their_documented_checksums() -> None:
    vendor = WEB / "static" / "vendor"
    readme = (vendor / "README.md").read_text()
    for name in ("dagre.min.js", "uPlot.iife.min.js", "uPlot.min.css"):
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in readme, name
    for licence in ("LICENSE.dagre.txt", "LICENSE.uPlot.txt"):
        assert "MIT" in (vendor / licence).read_text() or "Permission is hereby granted" in (vendor / licence).read_text()
    assert "1.6.32" in readme and "3.1.3" in readme


def test_no_inline_script_no_handlers_no_cdn_no_innerhtml() -> None:
    for template in (WEB / "templates").glob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (template.name, tag)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text), template.name
        assert "http://" not in text and "https://" not in text, template.name  # no CDN
        assert "|safe" not in text.replace(" ", ""), template.name
    for script in (WEB / "static").glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, script.name
        assert "document.write" not in text, script.name
