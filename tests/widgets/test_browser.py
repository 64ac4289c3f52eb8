"""The widget app in a real JupyterLab in headless Chromium: it renders and a slider move changes the figure."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium "
                    "(apt-get update && apt-get install -y chromium)")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="needs the playwright Python package")
@pytest.mark.skipif(shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None,
                    reason="needs jupyterlab in this environment")
def test_slider_move_changes_the_figure_in_jupyterlab(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import widget_screenshot
    finally:
        sys.path.pop(0)
    result = widget_screenshot.run(tmp_path)
    assert result["before"] and "L0@" in result["before"]
    assert result["after_layer"] != result["before"] and "L1@" in result["after_layer"]
    assert result["after"] != result["after_layer"]
    for name in ("widget_before.png", "widget_after_slider.png"):
        assert (tmp_path / name).stat().st_size > 10_000
