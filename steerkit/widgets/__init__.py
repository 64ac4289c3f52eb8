"""steerkit.widgets"""
