"""The run wing: everything a training run needs besides the model and the metrics.

Owns the config loader, checks and derived values (`config`), the pure train and eval steps over
K vmapped seeds (`steps`), the device mesh and multi-process start (`sharding`), orbax
checkpoints (`checkpoint`), metrics.jsonl and W&B mirroring (`tracking`), the run folder's lock,
stop signals and metric averaging (`workdir`), the entry points' shared command-line wrapper
(`cli`), XLA runtime settings (`runtime`), profiling (`profiling`), and FLOP counts, memory
readings and the machine description that benchmarks record (`measure`).

Imports the model, data and eval wings.
"""
