"""steerkit.gap"""
