"""Sweep definitions: each module's get_sweep() returns plain data (see attn_jax/sweep.py)."""
