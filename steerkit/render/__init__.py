"""steerkit.render"""
