"""Sweep definitions: each module's get_sweep() returns plain data (see launch/sweep.py)."""
