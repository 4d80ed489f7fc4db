r"""Train and evaluate an attention seq2seq model.

    python -m attn_jax.train --config=configs/default.py --workdir=runs/demo \
        [--config.model.scorer=dot --config.model.hidden_size=256 ...]

Rerunning the same command resumes from the newest intact checkpoint in the workdir; a finished
run (results.json present) is not retrained. The flow: config -> data -> model -> train step ->
metrics/checkpoints -> evaluation -> heatmaps and results.json. Supervised attention
(train.align_loss_weight > 0): the train batches carry gold links, and each training row of
metrics.jsonl gains `align_kl`, the mean KL(gold_t || α_t) per target token with gold.

A workdir belongs to one process at a time (an flock on WORKDIR/.lock holding its pid; the
system releases it however the process ends), and SIGTERM / SIGUSR1 checkpoint the run and end it
with exit status 143 (both `attn_jax.run.workdir`). config.json is written only once the run has
really started (data loaded, state initialised or restored), so a command that fails earlier
leaves nothing that refuses the corrected one; with config.json missing, the checkpoint's
parameter shapes are still checked against the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from attn_jax.data import batches, sources
from attn_jax.eval import attribution, evaluate, plots
from attn_jax.eval import gold as gold_lib
from attn_jax.model import arch, attention
from attn_jax.model import image as image_lib
from attn_jax.run import checkpoint, cli, runtime, sharding, steps, tracking
from attn_jax.run import config as config_lib
from attn_jax.run import workdir as workdir_lib


class TrainingError(RuntimeError):
    """A run that cannot continue (NaN loss, incompatible resume); the message names the fix."""


@dataclasses.dataclass
class _Run:
    """What the stages of one run share."""

    config: ml_collections.ConfigDict
    workdir: str
    data: batches.Data
    derived: config_lib.Derived
    model: Any  # The flax module of model.arch (arch.build).
    ckpts: checkpoint.Checkpoints
    tracker: tracking.Tracker | tracking.NoTracker
    layout: sharding.Layout
    stop: workdir_lib.StopSignals
    # Where this invocation's wall time went (results.json "seconds"): data, setup (model,
    # state, checkpoint, tracker), train (the steps, their compiles included), evaluation (the
    # periodic ones and checkpoint saves), final (the final evaluation and heatmaps).
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    # time.time() when the run would have started had it never been interrupted: this
    # invocation's start, less the time the earlier ones had taken up to the resumed checkpoint.
    clock_start: float = dataclasses.field(default_factory=time.time)

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.derived.seeds

    @property
    def scorer(self) -> type[attention.Scorer]:
        return attention.scorer_class(self.derived.model.scorer)

    def elapsed(self) -> float:
        """Wall seconds of the run so far, earlier invocations included (see clock_start)."""
        return time.time() - self.clock_start

    def log(self, step: int, split: str, rows: list[dict[str, Any]]) -> None:
        """Writes metrics.jsonl rows (one per seed), each stamped with elapsed_seconds."""
        elapsed = round(self.elapsed(), 1)
        self.tracker.write(step, split, [dict(r, elapsed_seconds=elapsed) for r in rows])

    def evaluate(self, split: str, params, eval_step, beam_step, subset: int = 0):
        ev = self.config.eval
        return evaluate.run_split(
            self.data, split, eval_step, params, batch_size=ev.batch_size,
            num_seeds=len(self.seeds), attends=self.scorer.attends,
            subset=subset, beam_step=beam_step, length_penalty=ev.length_penalty,
            attribution=self.attribution)

    @functools.cached_property
    def attribution(self):
        """eval.attribution_methods' maps program (`attribution.make_scorer`), or None."""
        methods = attribution.check_methods(self.config.eval.attribution_methods,
                                            self.config.eval.ig_steps)
        return attribution.make_scorer(self.model, methods, self.config.eval.ig_steps) \
            if methods else None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs (or resumes) training, evaluates on valid and test, returns results.json's content."""
    start_time = time.time()
    sharding.set_cpu_devices(config.mesh.cpu_devices)  # Before anything starts JAX's backends.
    model_config = config_lib.validate(config)  # Raises before anything is read or compiled.
    writer = sharding.is_writer()  # Process 0 of several (or the only one) writes the files.
    with contextlib.ExitStack() as stack:
        if writer:
            stack.enter_context(workdir_lib.lock_workdir(workdir))
        workdir_lib.check_saved_config(workdir, config)
        results_path = os.path.join(workdir, "results.json")
        if os.path.exists(results_path):
            logging.info("%s already holds a finished run; not retraining.", workdir)
            with open(results_path) as f:
                return json.load(f)
        layout = sharding.make_layout(config.mesh, config.train.num_seeds)
        sizes = batches.batch_sizes(config.data, config.data.buckets)
        sharding.check_batch_sizes(layout, sizes, config.eval.batch_size)

        if not writer:
            sharding.barrier("data prepared")  # Process 0 prepares the data and vocabularies.
        data = _load_data(config, workdir)  # Logs its own summary.
        if writer:
            sharding.barrier("data prepared")
        data_done = time.time()
        derived = config_lib.derive(
            config, src_vocab_size=data.src_vocab.size, tgt_vocab_size=data.tgt_vocab.size,
            steps_per_epoch=batches.steps_per_epoch(data, sizes), model=model_config)
        model = arch.build(derived.model)
        ckpts = checkpoint.Checkpoints(workdir, config.train.keep_checkpoints)
        stack.callback(ckpts.close)  # Waits for in-flight saves: finished work is never lost.
        tx, schedule = steps.make_optimizer(config.train, derived.num_steps)
        state = layout.state(
            steps.init_state(model, tx, derived.seeds, data.buckets[0]))
        if ckpts.latest_step() is not None:
            state = ckpts.restore(state)  # ValueError if it fits another config.
        start = ckpts.latest_step() or 0
        if writer:
            workdir_lib.write_config(workdir, config)  # Only now: the data loaded and the state fits.
            tracker = tracking.Tracker(workdir, json.loads(config.to_json()), derived.seeds,
                                       config.logging.wandb, config.logging.project,
                                       config.logging.entity, config.logging.group)
        else:
            tracker = tracking.NoTracker(workdir)
        stack.callback(tracker.close)
        stop = stack.enter_context(workdir_lib.StopSignals())
        logged = tracker.truncate(start)
        run = _Run(config, workdir, data, derived, model, ckpts, tracker, layout, stop,
                   seconds={"data": data_done - start_time, "evaluation": 0.0},
                   clock_start=start_time - _elapsed_at(logged, start))
        if start:
            logging.info("Resumed from the checkpoint at step %d.", start)
        _check_log(run, logged, start)
        plateau = _Plateau.replay(config.train, logged, start)

        eval_step = steps.make_eval_step(model, config.eval.max_decode_extra, layout)
        beam_step = (steps.make_beam_step(model, config.eval.beam_size,
                                          config.eval.max_decode_extra, layout)
                     if config.eval.beam_size > 1 else None)
        train_start = time.time()
        run.seconds["setup"] = train_start - data_done
        state, last_valid, final_step = _train(run, state, start, tx, schedule, eval_step,
                                               beam_step, plateau)
        final_start = time.time()
        run.seconds["train"] = final_start - train_start - run.seconds["evaluation"]
        results = _final_evaluation(run, state, final_step, eval_step, beam_step, last_valid)
        end = time.time()
        run.seconds["final"] = end - final_start
        # The whole run: a resumed one counts its earlier invocations up to the checkpoint it
        # resumed from (the steps redone after it, once); "seconds" splits this invocation, one
        # reading of the clock ending one part and starting the next, so that they add up to it.
        results["wall_seconds"] = end - run.clock_start
        results["seconds"] = {k: round(v, 1) for k, v in run.seconds.items()}
        if writer:
            with open(results_path + ".tmp", "w") as f:
                json.dump(tracking.json_safe(results), f, indent=2)
            os.replace(results_path + ".tmp", results_path)  # Last: marks the run finished.
        return results


def _load_data(config: ml_collections.ConfigDict, workdir: str) -> batches.Data:
    """The data of `config.data`; with supervised attention (train.align_loss_weight > 0) the
    train batches also carry the gold links, train.align_gold's when set (a file that does not
    fit the raw train split: ValueError naming file, line and fix, before anything compiles)."""
    t = config.train
    reader = None
    if t.align_gold:
        def reader(pairs):
            try:
                return gold_lib.read_split_gold(t.align_gold, [(p.src, p.tgt) for p in pairs],
                                                "config.train.align_gold")
            except gold_lib.InputError as e:
                raise ValueError(str(e)) from None
    return batches.load(config.data, workdir, links=t.align_loss_weight > 0, train_gold=reader)


def _align_rows(rows: list[dict[str, Any]], window: list[dict[str, Any]]) -> None:
    """Supervised attention: adds each replica's "align_kl" to its training rows, the mean
    KL(gold_t || α_t) per target token with gold links over the logging window."""
    if not window or "align_sum" not in window[0]:
        return
    total = np.sum([m["align_sum"] for m in window], axis=0)  # [K]
    tokens = np.sum([m["align_tokens"] for m in window], axis=0)  # [K]
    for row, kl, n in zip(rows, total, tokens):
        row["align_kl"] = float(kl / max(n, 1.0))


def _elapsed_at(rows: list[dict[str, Any]], step: int) -> float:
    """The run's elapsed_seconds at `step` by its metrics.jsonl rows (0 if none say)."""
    return max((r.get("elapsed_seconds") or 0.0 for r in rows if r["step"] <= step), default=0.0)


def _check_log(run: _Run, rows: list[dict[str, Any]], start: int) -> None:
    """Warns when metrics.jsonl and the checkpoint disagree (a log deleted, replaced or kept
    from checkpoints that are gone): the rerun logs from the resumed step on, so rows missing
    before it stay missing, and rows past it are dropped and logged again."""
    log_every, num_steps = run.config.train.log_every, run.derived.num_steps
    want = set(range(log_every, start + 1, log_every)) | ({start} if start == num_steps else set())
    missing = sorted(want - {r["step"] for r in rows if r["split"] == "train"})
    if missing:
        logging.warning("%s lacks the training rows of steps %d..%d although the checkpoint is "
                        "at step %d (was it deleted or replaced?); it continues from step %d, "
                        "so those rows stay missing.", run.tracker.path, missing[0],
                        missing[-1], start, start)
    last_row = max((r["step"] for r in rows), default=0)
    if last_row > start + run.derived.checkpoint_every:
        logging.warning("%s holds rows up to step %d but no checkpoint after step %d (were "
                        "checkpoints removed?); dropping the rows after step %d and training "
                        "those steps again.", run.tracker.path, last_row, start, start)


@dataclasses.dataclass
class _Plateau:
    """Early stopping on the mean valid BLEU over replicas: stop once `patience` evaluations in a
    row have not beaten the best so far by more than `min_delta` BLEU (patience 0: never)."""

    patience: int
    min_delta: float
    best: float = -math.inf
    since_best: int = 0

    def update(self, bleu: float) -> bool:
        """Records one evaluation; returns whether training should stop."""
        if bleu > self.best + self.min_delta:
            self.best, self.since_best = bleu, 0
        else:
            self.since_best += 1
        return self.stopped

    @property
    def stopped(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    @classmethod
    def replay(cls, train_cfg, rows: list[dict[str, Any]], start: int) -> _Plateau:
        """The state after the evaluations logged up to `start` (a resumed run goes on exactly)."""
        plateau = cls(int(train_cfg.early_stop_patience), float(train_cfg.early_stop_min_delta))
        by_step: dict[int, list[float]] = {}
        for r in rows:
            if r["split"] == "valid" and r["step"] <= start and r.get("bleu") is not None:
                by_step.setdefault(r["step"], []).append(r["bleu"])
        for step in sorted(by_step):
            plateau.update(float(np.mean(by_step[step])))
        return plateau


def _train(run: _Run, state, start: int, tx, schedule, eval_step, beam_step, plateau: _Plateau):
    """The training loop from `start` (the restored checkpoint's step, or 0) to num_steps, or to
    an evaluation where `plateau` says stop.

    Returns the final state, when this call ran it the last step's evaluation of the whole valid
    split (else None), so the final evaluation need not decode it again, and the last step.
    """
    config, ckpts, seeds = run.config, run.ckpts, run.seeds
    num_steps, layout = run.derived.num_steps, run.layout
    train_step = steps.make_train_step(run.model, tx, config.train.label_smoothing, layout,
                                       config.train.attention_penalty,
                                       align_loss_weight=config.train.align_loss_weight,
                                       align_possible_weight=config.train.align_possible_weight)
    stream = batches.train_batches(run.data, batches.batch_sizes(config.data, run.data.buckets),
                                    seeds, start_step=start)
    progress = None
    if config.logging.progress_bar:
        from tqdm import tqdm
        progress = tqdm(total=num_steps, initial=start, desc="train", dynamic_ncols=True)

    window, window_start = [], time.time()
    last_valid = None
    done = start
    for step in range(start, num_steps if not plateau.stopped else start):
        batch = next(stream)
        state, step_metrics = train_step(state, layout.train_batch(batch))
        window.append(step_metrics)
        done = step + 1
        if progress:
            progress.update(1)
        if layout.steps_in_flight and (done - start) % layout.steps_in_flight == 0:
            jax.block_until_ready(step_metrics)
        _maybe_stop(run, state, done)
        window_end = done % config.train.log_every == 0 or done == num_steps
        if window_end:
            window = layout.gather(window)
            rows = workdir_lib.window_metrics(window, time.time() - window_start,
                                              float(schedule(step)))
            _align_rows(rows, window)
            bad = [s for s, r in zip(seeds, rows) if not np.isfinite(r["loss"])]
            if bad:
                raise TrainingError(
                    f"The training loss became NaN/Inf by step {done} (seeds {bad}). Nothing was "
                    f"saved after that; the last good checkpoint (step {ckpts.latest_step()}) is "
                    "intact. Lower --config.train.learning_rate or --config.train.grad_clip and "
                    "rerun the same command to resume from it.")
            run.log(done, "train", rows)
            if progress:
                progress.set_postfix(loss=f"{rows[0]['loss']:.3f}",
                                     tok_s=f"{sum(r['tokens_per_sec'] for r in rows):.0f}")
            window, window_start = [], time.time()
        evaluate_now = done % run.derived.eval_every == 0 or done == num_steps
        if evaluate_now or done % run.derived.checkpoint_every == 0:
            eval_start = time.time()
            valid_bleu = None
            if evaluate_now:
                valid = run.evaluate("valid", state.params, eval_step, beam_step,
                                     subset=config.eval.valid_subset)
                run.log(done, "valid", valid.metrics)
                valid_bleu = float(np.mean([m["bleu"] for m in valid.metrics]))
                stop = plateau.update(valid_bleu)
                if (done == num_steps or stop) and not config.eval.valid_subset:
                    last_valid = valid
                logging.info("step %d: valid BLEU %.2f", done, valid_bleu)
            # A resume point only where a logging window ends, so that a resumed run logs
            # exactly the rows of an uninterrupted one (the best checkpoint is not one).
            ckpts.save(done, state, valid_bleu, last=window_end)
            window_start = time.time()  # Evaluation time is not training time.
            run.seconds["evaluation"] += window_start - eval_start
            if valid_bleu is not None and plateau.stopped:
                logging.info("Stopping early at step %d: valid BLEU has not improved by more "
                             "than %g for %d evaluations (best %.2f).", done, plateau.min_delta,
                             plateau.patience, plateau.best)
                break
    if progress:
        progress.close()
    _maybe_stop(run, state, done, check_now=True)
    return state, last_valid, done


def _maybe_stop(run: _Run, state, done: int, check_now: bool = False) -> None:
    """After a stop signal (`StopSignals.stopping`, agreed by every process): checkpoint the state
    of step `done` (unless saved already), wait for the write, and raise Preempted."""
    if not run.stop.stopping(done, check_now):
        return
    if run.ckpts.latest_step() != done:
        run.ckpts.save(done, state, None, last=True)
    run.ckpts.wait()
    raise run.stop.preempted(done)


def _final_evaluation(run: _Run, state, final_step: int, eval_step, beam_step,
                      last_valid=None) -> dict[str, Any]:
    """Test and valid (all of each), heatmaps, W&B samples, with the parameters of the best
    checkpoint by valid BLEU (eval.use_best; the best of the periodic evaluations) or the last.

    With beam search on, both splits are also decoded greedily (`*_greedy` in results.json and
    metrics.jsonl), so every run reports the beam's gain over greedy on the same parameters.
    """
    data, seeds, num_steps = run.data, run.seeds, final_step
    params, evaluated_step = state.params, final_step
    best_step = run.ckpts.best.best_step()
    if run.config.eval.use_best and best_step is not None and best_step != final_step:
        params, evaluated_step, last_valid = run.ckpts.restore(state, best=True).params, best_step, None
        logging.info("Evaluating the best checkpoint by valid BLEU (step %d).", best_step)
    if last_valid is None:
        last_valid = run.evaluate("valid", params, eval_step, beam_step)
    out = {"valid": last_valid, "test": run.evaluate("test", params, eval_step, beam_step)}
    if beam_step is not None:
        out.update({f"{split}_greedy": run.evaluate(split, params, eval_step, None)
                    for split in ("valid", "test")})
    for split in out:
        if split != "valid":  # Valid was logged by the periodic evaluations.
            run.log(num_steps, split, out[split].metrics)
    test_sp = data["test"]
    if test_sp.images is not None:
        images, example = _caption_figures(run, params, eval_step, beam_step)
    else:
        images, example = _translation_figures(run, params, eval_step, beam_step)
    chosen = run.config.model  # What the run was asked for (validated; sizes derive from it).
    results = {
        "arch": chosen.arch, "scorer": chosen.scorer, "hidden_size": chosen.hidden_size,
        **({"flow": chosen.flow} if "flow" in arch.get(chosen.arch).only else {}),
        "num_steps": num_steps,  # Steps trained (early stop).
        "max_steps": run.derived.num_steps, "evaluated_step": evaluated_step,
        "test": workdir_lib.mean_metrics(out["test"].metrics),
        "valid": workdir_lib.mean_metrics(out["valid"].metrics),
        **{split: workdir_lib.mean_metrics(out[split].metrics) for split in out if "greedy" in split},
        "seeds": [{"seed": s, **{split: out[split].metrics[k] for split in out}}
                  for k, s in enumerate(seeds)],
    }
    if example:
        results["running_example"] = example
    for k, seed in enumerate(seeds):
        sample = [(test_sp.src_text[i], test_sp.tgt_text[i], out["test"].hyps[k][i])
                  for i in range(min(20, len(test_sp)))]
        run.tracker.log_media(seed, num_steps, images if k == 0 else {}, sample,
                              ("source", "reference", "hypothesis"))
        run.tracker.summary(seed, {"test": out["test"].metrics[k]})
    return results


def _caption_figures(run: _Run, params, eval_step, beam_step):
    """Image data: the running example picture (if the data has one) and `eval.num_heatmaps`
    test pictures captioned as the metrics are (beam search when on), each drawn as a strip of
    its words' attention over the picture (Xu et al. 2015, Fig. 3) under WORKDIR/attention/.
    Returns ({name: png path}, results.json's running_example or None)."""
    data, ev = run.data, run.config.eval
    test_sp = data["test"]
    scene = sources.dataset(run.config.data.name).example_scene  # None: the data has none.
    picks = _heatmap_examples(data, ev.num_heatmaps)
    pictures = ([scene.image] if scene else []) + [test_sp.images[i] for i in picks]
    names = ([plots.RUNNING_EXAMPLE] if scene else []) + [f"test_{i}" for i in picks]
    gold = ([(scene.caption, scene.boxes)] if scene else []) + [
        (test_sp.tgt_text[i], test_sp.boxes[i] if test_sp.boxes is not None else None)
        for i in picks]  # (reference, its words' gold boxes)
    if not pictures:
        return {}, None
    decode = evaluate.decoder(eval_step, beam_step, ev.length_penalty)  # as the metrics'
    captions = evaluate.caption_images(decode, params, np.stack(pictures), ev.batch_size)[0]
    grid = image_lib.grid_shape(test_sp.images.shape[1])
    out = {}
    for name, picture, (reference, boxes), (ids, weights) in zip(names, pictures, gold,
                                                                  captions):
        caption = data.tgt_vocab.decode(ids)
        if sharding.is_writer() and run.scorer.attends:
            path = os.path.join(run.workdir, "attention", f"{name}.png")
            # The gold boxes belong to the reference's words: drawn when the caption is it.
            plots.caption_strip(picture, data.tgt_vocab.pieces(ids),
                                weights.reshape(len(ids), *grid), path, title=caption,
                                boxes=boxes if caption == reference else None)
            out[name] = path
    example = None
    if scene:
        example = {"src": scene.caption, "hyp": data.tgt_vocab.decode(captions[0][0])}
    return out, example


def _translation_figures(run: _Run, params, eval_step, beam_step):
    """Text data: heatmaps of the running example and `eval.num_heatmaps` test sentences (and
    the running example's layers x heads grid for a per-head family). Returns ({name: png
    path}, results.json's running_example or None)."""
    data, seeds = run.data, run.seeds
    test_sp = data["test"]
    example = sources.dataset(run.config.data.name).running_example  # None: the data has none.
    texts = {plots.RUNNING_EXAMPLE: example} if example else {}
    texts.update({f"test_{i}": test_sp.src_text[i]
                  for i in _heatmap_examples(data, run.config.eval.num_heatmaps)})
    # Decoded as the metrics are (beam search when it is on), so the pictures show those outputs.
    translations = evaluate.translate_texts(data, eval_step, params, list(texts.values()),
                                            run.config.eval.batch_size, beam_step=beam_step,
                                            length_penalty=run.config.eval.length_penalty)
    images = (plots.run_heatmaps(os.path.join(run.workdir, "attention"), data.src_vocab,
                                 data.tgt_vocab, texts, translations, seeds,
                                 run.derived.model.scorer, run.scorer.attends)
              if sharding.is_writer() else {})
    if example and arch.of(run.derived.model).per_head:  # Every layer and head, as a grid.
        hyp = translations[0][0][0]
        maps = evaluate.forced_heads(data, eval_step, params, example, hyp,
                                     run.config.eval.batch_size)
        if sharding.is_writer():
            src = data.src_vocab.pieces(data.src_vocab.encode(example))
            images[f"{plots.RUNNING_EXAMPLE}_heads"] = str(plots.head_grid(
                maps[..., :len(src)], src, data.tgt_vocab.pieces(hyp),
                os.path.join(run.workdir, "attention", f"{plots.RUNNING_EXAMPLE}_heads.png"),
                title=f"{run.derived.model.scorer} cross-attention: {data.tgt_vocab.decode(hyp)}"))
    running = ({"src": example, "hyp": data.tgt_vocab.decode(translations[0][0][0])}
               if example else None)
    return images, running


def _heatmap_examples(data: batches.Data, count: int) -> list[int]:
    """`count` test examples spread over the source lengths (short to long)."""
    sp = data["test"]
    order = np.argsort([len(s) for s in sp.src_ids], kind="stable")
    if not count:
        return []
    picks = np.linspace(0, len(order) - 1, count + 2)[1:-1] if count > 1 else [len(order) // 4]
    return sorted({int(order[int(p)]) for p in picks})


def _define_flags() -> None:
    """Flags exist only when run as a program, so importing this module defines none."""
    config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (created; resumed if it exists).")


def _main(argv):
    del argv
    if flags.FLAGS.workdir is None or flags.FLAGS.config is None:
        raise app.UsageError("--config and --workdir are required.")
    sharding.initialize_distributed()
    results = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    test = results["test"]
    pictures = {f"test_{k}": test[k] for k in ("cider", "pointing", "mass_in_box") if k in test}
    print(json.dumps({"test_bleu": test["bleu"], "test_exact_match": test["exact_match"],
                      "test_aer": test["aer"], "test_perplexity": test["perplexity"], **pictures,
                      "running_example": results.get("running_example", {}).get("hyp"),
                      "wall_seconds": results.get("wall_seconds"),
                      "seconds": results.get("seconds")}, indent=1))


def main():
    runtime.keep_freed_memory()
    runtime.use_compilation_cache()
    cli.quiet_logs()  # Before JAX looks for its backends.
    _define_flags()
    try:
        config_lib.check_overrides(sys.argv[1:])  # Rewords unknown keys before absl sees them.
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        app.run(_main)
    except PermissionError as e:  # Somewhere other than the workdir (e.g. data.tfds_dir).
        sys.exit(f"error: {e.strerror}: {e.filename}; make it writable or choose another path.")
    except (ValueError, TrainingError, OSError) as e:
        sys.exit(f"error: {e}")
    except workdir_lib.Preempted as e:
        print(f"attn_jax.train: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
