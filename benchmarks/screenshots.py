"""Screenshots of the published reports, as a reader sees them, for a reviewer.

Run:  .venv/bin/python benchmarks/screenshots.py [--reports reports] [--width 1280]

Opens ``reports/index.html`` and every study report from disk in headless Chromium (Debian's
chromium, driven by Playwright), saves a full-page screenshot of each as
``reports/_screenshots/<page>.png`` and prints a Markdown table: the page, its title, links
and images, and what a reader would trip over (NaN / <NA> / None in the text, broken links,
images that do not load, anything fetched from the network, console errors).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from registry_lib.pipeline.browser import browser_unavailable, check_page, chromium, report_pages

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="the reports folder (default: reports/)")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in pixels")
    args = parser.parse_args(argv)
    reports = Path(args.reports).resolve()
    why = browser_unavailable()
    if why:
        print(f"screenshots: {why}", file=sys.stderr)
        return 2
    pages = report_pages(reports) if reports.is_dir() else []
    if not pages:
        print(f"screenshots: {reports} holds no reports (run .venv/bin/registry-lab reproduce first)", file=sys.stderr)
        return 2
    out = reports / "_screenshots"
    rows = []
    with chromium() as browser:
        for page in pages:
            name = "index" if page.name == "index.html" else page.stem
            t0 = time.perf_counter()
            c = check_page(browser, page, screenshot=out / f"{name}.png", width=args.width)
            issues = ([f"visible {', '.join(c.problems)}"] if c.problems else []) + \
                     ([f"{len(c.broken_links)} broken link(s)"] if c.broken_links else []) + \
                     ([f"{len(c.broken_images)} broken image(s)"] if c.broken_images else []) + \
                     ([f"network: {', '.join(c.external)}"] if c.external else []) + \
                     ([f"{len(c.console_errors)} console error(s)"] if c.console_errors else [])
            rows.append((f"_screenshots/{name}.png", c.title, c.n_links, c.n_images,
                         f"{time.perf_counter() - t0:.1f}", "; ".join(issues) or "none"))
    print("| screenshot | title | links | images | s | issues |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    return 0 if all(r[-1] == "none" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
