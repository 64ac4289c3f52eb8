"""Interactive result browsers for JupyterLab (static fallback under papermill).

Example:
    >>> from steerkit.widgets import SweepApp
    >>> SweepApp(df, items=items).show()
"""

from __future__ import annotations

from steerkit.widgets.app import SweepApp, demo_results, has_frontend

__all__ = ["SweepApp", "demo_results", "has_frontend"]
