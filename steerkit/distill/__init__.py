"""steerkit.distill"""
