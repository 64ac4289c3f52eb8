"""steerkit.vectors"""
