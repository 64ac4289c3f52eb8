"""steerkit.tasks"""
