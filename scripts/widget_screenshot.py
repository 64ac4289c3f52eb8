"""Render the sweep widget app in a real JupyterLab in headless Chromium, move a slider, save screenshots.

Steps: run a small real sweep (tiny LLaVA, synthetic items; seconds) into a temporary folder, write a notebook that
opens :class:`steerkit.widgets.SweepApp` on it, start ``jupyter lab`` on 127.0.0.1 with a random token, open the
notebook in Chromium (Playwright), run all cells, take a screenshot, move the layer slider and the strength slider
with the keyboard, wait for the heatmap's title to change, take screenshots again, and stop the server.

    .venv/bin/python scripts/widget_screenshot.py --out docs/img

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package; no browser
download. ``tests/widgets/test_browser.py`` runs this and is skipped when chromium is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

NOTEBOOK_CELLS = [
    "import os\nos.environ['STEERKIT_WIDGETS'] = 'widget'\n"
    "from steerkit.widgets import SweepApp, demo_results\n"
    "df, items = demo_results('store')\n"
    "app = SweepApp({'tiny-llava (random weights)': df}, items=items)\n"
    "app.show()",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _wait_server(url: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer at {url} within {timeout} s")


def _title(page) -> str:  # noqa: ANN001 - playwright Page
    return page.locator(".steerkit-sweep-app .js-plotly-plot .gtitle").first.text_content() or ""


def _move_slider(page, index: int, presses: int) -> None:  # noqa: ANN001
    """Focus the index-th slider handle of the app and press ArrowRight (noUiSlider's keyboard control)."""
    handle = page.locator(".steerkit-sweep-app .widget-slider .noUi-handle").nth(index)
    handle.focus()
    for _ in range(presses):
        handle.press("ArrowRight")
        time.sleep(0.2)


def _dismiss(page) -> None:  # noqa: ANN001
    """Answer JupyterLab's start-up dialogs: the kernel chooser (keep Python 3) and the news prompt."""
    try:
        page.locator(".jp-Dialog").get_by_role("button", name="Select").click(timeout=15_000)
    except Exception:  # noqa: BLE001 - no dialog: the kernel started by itself
        pass


def run(out: Path, *, timeout: float = 180, keep: bool = False) -> dict[str, object]:
    """Do the whole round trip; return the heatmap titles before/after and the screenshot paths."""
    from playwright.sync_api import sync_playwright

    from steerkit.widgets import demo_results

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="steerkit-widget-"))
    demo_results(work / "store")  # the notebook's sweep then only reads the finished store
    _notebook(work / "sweep_app.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "JUPYTER_CONFIG_DIR": str(work / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(work / ".runtime")}
    env.pop("STEERKIT_WIDGETS", None)
    # no "get Jupyter news?" toast over the screenshots
    settings = work / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(work / ".settings")
    jupyter = Path(sys.executable).with_name("jupyter")
    server = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={work}",
         f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"),
    )
    result: dict[str, object] = {}
    try:
        _wait_server(f"http://127.0.0.1:{port}/api/status?token={token}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout * 1000)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/sweep_app.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
            _dismiss(page)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            try:
                page.wait_for_selector(".steerkit-sweep-app .js-plotly-plot .gtitle", state="visible")
            except Exception:
                page.screenshot(path=str(out / "widget_failure.png"))  # what the page showed instead
                (out / "widget_failure.html").write_text(page.content())
                raise
            time.sleep(1.0)
            before = _title(page)
            app = page.locator(".steerkit-sweep-app")
            app.screenshot(path=str(out / "widget_before.png"))
            _move_slider(page, 0, 1)  # layer
            page.wait_for_function(
                "t => { const e = document.querySelector('.steerkit-sweep-app .js-plotly-plot .gtitle');"
                " return e && e.textContent !== t; }", arg=before)
            after_layer = _title(page)
            _move_slider(page, 1, 2)  # strength
            page.wait_for_function(
                "t => { const e = document.querySelector('.steerkit-sweep-app .js-plotly-plot .gtitle');"
                " return e && e.textContent !== t; }", arg=after_layer)
            time.sleep(0.5)
            after = _title(page)
            app.screenshot(path=str(out / "widget_after_slider.png"))
            flips = page.locator(".steerkit-sweep-app .widget-select select option")
            if flips.count():
                page.locator(".steerkit-sweep-app .widget-select select").select_option(index=0)
                page.wait_for_selector(".steerkit-sweep-app .widget-image img, .steerkit-sweep-app img.widget-image",
                                       state="attached")
                time.sleep(0.5)
                app.screenshot(path=str(out / "widget_flipped_item.png"))
            page.screenshot(path=str(out / "widget_lab.png"))
            browser.close()
        result = {"before": before, "after_layer": after_layer, "after": after,
                  "screenshots": sorted(str(p) for p in out.glob("widget_*.png"))}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    """Command line: ``--out`` folder for the PNGs (default docs/img)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--keep", action="store_true", help="keep the temporary jupyter folder (server.log)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(json.dumps(run(args.out, keep=args.keep), indent=1))


if __name__ == "__main__":
    main()
