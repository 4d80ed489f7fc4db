"""Sweep launchers (local processes, W&B Sweeps, SLURM arrays); see launch/README.md.

Every launcher expands a sweep definition with launch.sweep.expand() and runs each trial with
launch.sweep.command(), so the three routes run the same trials in the same workdirs.
"""
