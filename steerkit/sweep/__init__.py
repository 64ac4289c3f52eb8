"""steerkit.sweep"""
