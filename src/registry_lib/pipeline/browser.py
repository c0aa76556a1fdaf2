"""The reports as a reader sees them: opened from disk in headless Chromium (Playwright).

Used by the browser test (``tests/test_browser.py``) and the screenshots script
(``benchmarks/screenshots.py``). Playwright drives the system's Chromium (Debian's
``chromium`` package, installed by ``make setup`` when missing); Playwright's own browser
download is not needed.

Example:
    >>> visible_problems("Rate 1.2 (NaN) and <NA> but Nantes and None of them")
    ['NaN', '<NA>', 'None']
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
_BAD = re.compile(r"(?<![\w])(NaN|<NA>|None|nan|NaT)(?![\w])")


def chromium_path() -> str | None:
    """The Chromium to drive: ``$REGISTRY_LAB_CHROMIUM``, else Debian's, else ``chromium`` on PATH.

    Example:
        >>> import tempfile
        >>> from unittest import mock
        >>> with tempfile.NamedTemporaryFile() as exe:   # a Chromium of one's own, named in the environment
        ...     with mock.patch.dict(os.environ, {"REGISTRY_LAB_CHROMIUM": exe.name}):
        ...         chromium_path() == exe.name
        True
    """
    env = os.environ.get("REGISTRY_LAB_CHROMIUM")
    if env and Path(env).exists():
        return env
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_unavailable() -> str | None:
    """Why the browser checks cannot run here (None when they can).

    Example:
        >>> from unittest import mock
        >>> with mock.patch(f"{__name__}.chromium_path", return_value=None):   # a machine without Chromium
        ...     print(browser_unavailable())
        no Chromium found (make setup installs Debian's 'chromium' with apt-get when it can; or set REGISTRY_LAB_CHROMIUM to a Chromium executable)
        >>> with mock.patch(f"{__name__}.chromium_path", return_value="/usr/bin/chromium"):
        ...     browser_unavailable() is None
        True
    """
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (it is in requirements.lock: run make setup)"
    if chromium_path() is None:
        return ("no Chromium found (make setup installs Debian's 'chromium' with apt-get when it can; "
                "or set REGISTRY_LAB_CHROMIUM to a Chromium executable)")
    return None


def visible_problems(text: str) -> list[str]:
    """Raw-pandas leftovers (NaN, <NA>, None, NaT) in a page's visible text, in order found.

    Example:
        >>> visible_problems("Net survival at 5 years: NaN (NaT to 2019-12-31); Nantes: 0.61")
        ['NaN', 'NaT']
        >>> visible_problems("Net survival at 5 years: 0.61 (0.58 to 0.64)")
        []
    """
    found: list[str] = []
    for m in _BAD.finditer(text):
        if m.group(1) not in found:
            found.append(m.group(1))
    return found


def report_pages(reports: Path) -> list[Path]:
    """``index.html`` and every study report (``<folder>/<folder>.html``) under ``reports``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     reports = Path(d)
        ...     for page in ("index.html", "linkage_quality/linkage_quality.html",
        ...                  "covid_impact/results.json", ".failed/cluster/cluster.html"):
        ...         (reports / page).parent.mkdir(parents=True, exist_ok=True)
        ...         _ = (reports / page).write_text("<html></html>")
        ...     [p.relative_to(reports).as_posix() for p in report_pages(reports)]
        ['index.html', 'linkage_quality/linkage_quality.html']
    """
    pages = [reports / "index.html"] if (reports / "index.html").exists() else []
    for folder in sorted(p for p in reports.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        page = folder / f"{folder.name}.html"
        if page.exists():
            pages.append(page)
    return pages


@dataclass
class PageCheck:
    """What a reader would meet on one page.

    Example:
        >>> PageCheck(Path("index.html"), title="Registry Lab reports", n_links=12).ok
        True
        >>> PageCheck(Path("index.html"), title="Registry Lab reports", problems=["NaN"]).ok
        False
        >>> PageCheck(Path("covid_impact/covid_impact.html"), title="Notebook").ok   # nbconvert's default title
        False
    """

    path: Path
    title: str = ""
    problems: list[str] = field(default_factory=list)      # NaN / <NA> / None in visible text
    broken_links: list[str] = field(default_factory=list)  # local links to missing files
    external: list[str] = field(default_factory=list)      # scripts, styles or images fetched from the network
    broken_images: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    n_links: int = 0
    n_images: int = 0

    @property
    def ok(self) -> bool:
        return not (self.problems or self.broken_links or self.external or self.broken_images
                    or self.console_errors) and bool(self.title) and self.title != "Notebook"


@contextmanager
def chromium(**launch: Any) -> Iterator[Any]:
    """A headless Chromium browser (Playwright) on the system's Chromium.

    Example (where there is no Chromium it says why, before starting anything):
        >>> from unittest import mock
        >>> with mock.patch(f"{__name__}.chromium_path", return_value=None):
        ...     with chromium() as browser:
        ...         pass
        Traceback (most recent call last):
        RuntimeError: no Chromium found (make setup installs Debian's 'chromium' with apt-get when it can; or set REGISTRY_LAB_CHROMIUM to a Chromium executable)
    """
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(browser_unavailable() or "no Chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"],
                                    **launch)
        try:
            yield browser
        finally:
            browser.close()


def check_page(browser: Any, path: Path, *, screenshot: Path | None = None, width: int = 1280) -> PageCheck:
    """Open ``path`` from disk and check it (and save a full-page screenshot if asked).

    Example (``browser`` is what :func:`chromium` yields; here a stand-in answering as
    Chromium would for a page with a NaN, a link to a missing table and an external script):
        >>> import tempfile
        >>> from types import SimpleNamespace
        >>> class Page:
        ...     def on(self, event, handler):
        ...         if event == "request":
        ...             handler(SimpleNamespace(url="https://cdn.example.org/require.js"))
        ...     def goto(self, url, wait_until): pass
        ...     def wait_for_timeout(self, ms): pass
        ...     def title(self): return "Linkage quality"
        ...     def inner_text(self, selector): return "Recall 0.98, precision NaN"
        ...     def eval_on_selector_all(self, selector, script):
        ...         if selector == "a[href]":
        ...             return ["tables/recall.csv", "../index.html", "#methods", "https://www.ndrs.nhs.uk"]
        ...         return [["data:image/png;base64,iVBO", True]]
        ...     def close(self): pass
        >>> browser = SimpleNamespace(new_page=lambda viewport: Page())
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "index.html").write_text("<html></html>")
        ...     (Path(d) / "linkage_quality").mkdir()
        ...     r = check_page(browser, Path(d) / "linkage_quality" / "linkage_quality.html")
        >>> r.title, r.problems, r.broken_links, r.external, r.n_links, r.n_images, r.ok
        ('Linkage quality', ['NaN'], ['tables/recall.csv'], ['https://cdn.example.org/require.js'], 4, 1, False)
    """
    result = PageCheck(path)
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: result.console_errors.append(str(e)))
    page.on("requestfailed", lambda r: result.console_errors.append(f"failed to load {r.url}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        result.title = page.title()
        result.problems = visible_problems(page.inner_text("body"))
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        result.n_links = len(hrefs)
        for href in hrefs:
            parsed = urlparse(href)
            if parsed.scheme in ("http", "https", "mailto") or href.startswith("#"):
                continue
            target = (path.parent / unquote(parsed.path)).resolve() if parsed.path else path
            if not target.exists():
                result.broken_links.append(href)
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src') ? e.getAttribute('src').slice(0, 60) : '', "
                   "e.complete && e.naturalWidth > 0])")
        result.n_images = len(images)
        result.broken_images = [src for src, ok in images if not ok]
        result.external = sorted({u for u in requests if urlparse(u).scheme in ("http", "https")})
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    return result
