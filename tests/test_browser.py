"""The reports and JupyterLab in a real browser (headless Chromium through Playwright).

The published reports of a small-cohort run are opened from disk as a reader would: a title,
no NaN / <NA> / None in the visible text, every local link resolving, every image loading,
nothing fetched from the network and no console error. Then JupyterLab is started on a free
port with a token, a study notebook is opened (it must name the registry-lab kernel and open
unmodified) and run cell by cell: no error output, and the published reports unchanged.

Skipped, saying why, only where Chromium or Playwright cannot be installed (``make setup``
installs Debian's chromium when missing).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from registry_lib.io import sha256_tree
from registry_lib.pipeline.browser import browser_unavailable, check_page, chromium, report_pages

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reproduce")]

WHY = browser_unavailable()
needs_browser = pytest.mark.skipif(WHY is not None, reason=f"browser test skipped: {WHY}")
STUDIES = ["cohort_overview", "linkage_quality", "cluster_investigation", "treatment_effects", "covid_impact",
           "registry_statistics"]
LAB_NOTEBOOK = "05_registry_statistics.ipynb"


def _published(reports: Path) -> dict[str, str]:
    """Hashes of the published reports (scratch output and hidden state excluded)."""
    return {k: v for k, v in sha256_tree(reports).items() if not k.startswith(("_scratch/", "_screenshots/"))}


@needs_browser
def test_every_report_reads_cleanly_in_chromium(small_run):
    reports = small_run / "reports"
    pages = report_pages(reports)
    # every published study, plus any run-with-other-parameters folder the session made
    assert set(STUDIES) <= {p.parent.name for p in pages[1:]} and pages[0].name == "index.html"
    with chromium() as browser:
        checks = [check_page(browser, p) for p in pages]
    for c in checks:
        where = c.path.relative_to(small_run)
        assert c.title and c.title != "Notebook", f"{where}: title {c.title!r}"
        assert not c.problems, f"{where}: visible {c.problems}"
        assert not c.broken_links, f"{where}: broken links {c.broken_links}"
        assert not c.broken_images, f"{where}: images that do not load {c.broken_images}"
        assert not c.external, f"{where}: fetched from the network {c.external}"
        assert not c.console_errors, f"{where}: console errors {c.console_errors}"
    index = checks[0]
    assert index.n_links >= 3 * len(STUDIES), "the index links every report, notebook and results.json"
    for c in checks[1:]:
        assert c.n_images >= 1, f"{c.path.name}: no figure"
        assert c.n_links >= 4, f"{c.path.name}: header links missing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(small_run, tmp_path):
    port, token = _free_port(), "registry-lab-browser-test"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "REGISTRY_LAB_ROOT": str(small_run), "CI": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry_lib.cli", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=small_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("registry-lab lab did not answer within 120 s")
        yield base, token
    finally:
        try:
            requests.post(f"{base}/api/shutdown", headers={"Authorization": f"token {token}"}, timeout=5)
            proc.wait(timeout=30)
        except (requests.RequestException, subprocess.TimeoutExpired):
            proc.kill()


@needs_browser
def test_a_notebook_runs_in_jupyterlab_without_touching_the_published_reports(small_run, lab):
    base, token = lab
    reports = small_run / "reports"
    before = _published(reports)
    source_before = (small_run / "notebooks" / LAB_NOTEBOOK).read_bytes()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/lab/tree/notebooks/{LAB_NOTEBOOK}?token={token}&reset")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        kernel = page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").first
        kernel.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => { const k = document.querySelector('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName');"
            " return k && /Registry Lab/.test(k.textContent); }", timeout=120_000)
        assert "Registry Lab" in kernel.inner_text()
        page.wait_for_timeout(1500)
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), "the notebook opened modified"
        page.locator(".jp-Notebook").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_function(
            "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];"
            " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }", timeout=600_000)
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        error_outputs = page.locator(".jp-OutputArea-output.jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        assert error_outputs.count() == 0, error_outputs.first.inner_text()[:2000]
        assert page.locator(".jp-OutputArea-output img, .jp-RenderedMarkdown").count() > 0
        page.close()
    assert not errors, errors
    assert _published(reports) == before, "running a notebook in Lab changed the published reports"
    assert (reports / "_scratch" / "registry_statistics" / "results.json").exists()
    assert (small_run / "notebooks" / LAB_NOTEBOOK).read_bytes() == source_before, "the notebook file changed"
