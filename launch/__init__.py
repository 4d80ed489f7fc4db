"""Sweep launchers (local processes, W&B Sweeps, SLURM arrays); see launch/README.md.

Every launcher expands a sweep definition with attn_jax.sweep.expand() and runs each trial with
attn_jax.sweep.command(), so the three routes run the same trials in the same workdirs.
"""
