"""Hyper-parameter search with Ray Tune, as the authors did (paper Sec. 4, their code): AdamW lr in
{2e-5, 1e-5, 2e-6}, weight decay in {0, 1e-3, 1e-2}, focal gamma in {0, 0.5, 1, 2, 5}, trials stopped
early by ASHA on the validation score (mean of Task A and Task C weighted F1, reported every epoch).

Runs on a local Ray (``ray.init(num_cpus=...)`` on 127.0.0.1, no dashboard): the data are
preprocessed once and shared with the trials through the object store. Writes ``tune_results.json``
(every trial: its hyper-parameters, epochs run, best and last score), ``best_config.json`` and
``tune_trials.png`` (validation score per epoch, one line per trial). The search yields
hyper-parameters, not models: train the final models with ``memotion train --lr ... ``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from memotion.progress import progress_bar
from training.plots import plt, save_figure
from training.recipe import RecipeConfig

TUNED = ("lr", "weight_decay", "focal_gamma")
SCORE = "score"


@dataclass(frozen=True)
class SearchSpace:
    """The values tried per hyper-parameter (defaults: the authors' grid, 45 combinations)."""

    lr: tuple[float, ...] = (2e-5, 1e-5, 2e-6)
    weight_decay: tuple[float, ...] = (0.0, 1e-3, 1e-2)
    focal_gamma: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)

    def __post_init__(self) -> None:
        for name in TUNED:
            values = getattr(self, name)
            if not values:
                raise ValueError(f"search space: no values for {name}")
            if any(v < 0 for v in values) or (name == "lr" and any(v <= 0 for v in values)):
                raise ValueError(f"search space: {name} values must be positive, got {values}")

    def grid(self) -> list[dict[str, float]]:
        """Every combination, in a fixed order."""
        return [dict(zip(TUNED, combo)) for combo in itertools.product(*(getattr(self, n) for n in TUNED))]


@dataclass(frozen=True)
class TuneSettings:
    model: str = "clip_text"
    space: SearchSpace = field(default_factory=SearchSpace)
    search: Literal["grid", "random"] = "grid"
    num_samples: int = 1  # grid: repeats of the whole grid; random: how many draws
    max_epochs: int | None = None  # None: the recipe's epochs (ASHA's max_t)
    grace_period: int = 1  # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 2
    num_cpus: int = 2  # the local Ray's CPUs
    cpus_per_trial: int = 1  # also the trial's torch threads
    object_store_bytes: int = 1 << 30
    recipe: RecipeConfig = field(default_factory=RecipeConfig)

    def __post_init__(self) -> None:
        if self.search not in ("grid", "random"):
            raise ValueError(f"search must be grid or random, not {self.search!r}")
        if self.num_samples < 1 or self.cpus_per_trial < 1 or self.num_cpus < self.cpus_per_trial:
            raise ValueError("need num_samples >= 1 and 1 <= cpus_per_trial <= num_cpus")

    @property
    def epochs(self) -> int:
        return self.max_epochs or self.recipe.train.epochs

    def trial_count(self) -> int:
        return len(self.space.grid()) * self.num_samples if self.search == "grid" else self.num_samples


def param_space(settings: TuneSettings) -> dict[str, Any]:
    from ray import tune

    pick = tune.grid_search if settings.search == "grid" else tune.choice
    return {name: pick(list(getattr(settings.space, name))) for name in TUNED}


def asha_scheduler(settings: TuneSettings):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        metric=SCORE,
        mode="max",
        max_t=settings.epochs,
        grace_period=min(settings.grace_period, settings.epochs),
        reduction_factor=settings.reduction_factor,
    )


def epoch_metrics(entry: dict[str, float]) -> dict[str, float]:
    """What a trial reports per epoch: the selection score (mean of Task A and Task C F1)."""
    return {
        SCORE: 0.5 * (entry["val_task_a"] + entry["val_task_c"]),
        "task_a": entry["val_task_a"],
        "task_c": entry["val_task_c"],
        "train_loss": entry["train_loss"],
        "epoch": entry["epoch"],
    }


def _trial(params: dict[str, float], *, train, val, settings: TuneSettings) -> None:
    """One Ray Tune trial: train ``settings.model`` with ``params``, report every epoch."""
    import torch
    from ray import tune

    from training.backbone import normalise_pretrained
    from training.factory import build_model
    from training.trainer import train_model
    from training.warm_start import warm_start

    torch.set_num_threads(settings.cpus_per_trial)
    recipe = settings.recipe
    config = replace(recipe.train, epochs=settings.epochs, **{k: params[k] for k in TUNED})
    model = build_model(settings.model, recipe.clip, recipe.model, normalise_pretrained(recipe.pretrained))
    if recipe.init_from and settings.model in ("clip_text", "clip_image"):
        warm_start(model, Path(recipe.init_from) / settings.model / "checkpoint.pt", settings.model)
    train_model(
        model,
        settings.model,
        train,
        val,
        config,
        Path(tune.get_context().get_trial_dir()) / settings.model,
        recipe.clip,
        recipe.model,
        progress=False,
        log=lambda _: None,
        on_epoch=lambda entry: tune.report(epoch_metrics(entry)),
    )


def _progress_callback(total: int, enabled: bool):
    from ray.tune import Callback

    class TrialProgress(Callback):
        """One progress-bar step per finished trial; the best score so far as postfix."""

        def __init__(self) -> None:
            self.bar = None  # made in setup(): the Tuner pickles its callbacks first
            self.best = float("-inf")

        def __getstate__(self) -> dict:
            return {**self.__dict__, "bar": None}

        def setup(self, **info) -> None:
            self.bar = progress_bar(total=total, desc="tune", unit="trial", disable=not enabled)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.best = max(self.best, result.get(SCORE, float("-inf")))
            if self.bar is not None:
                self.bar.set_postfix(best=f"{self.best:.4f}", refresh=False)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            if self.bar is not None:
                self.bar.update(1)

        on_trial_error = on_trial_complete

        def on_experiment_end(self, trials, **info) -> None:
            if self.bar is not None:
                self.bar.close()

    return TrialProgress()


def _tensors(data_dir: Path, settings: TuneSettings, progress: bool) -> tuple[Any, Any]:
    """The train and val splits preprocessed once for the recipe's CLIP (shared by all trials)."""
    import open_clip

    from memotion.data_format import load_split
    from training.backbone import clip_context_length, create_clip, normalise_pretrained
    from training.dataset import build_tensors
    from training.recipe import preprocessing_for

    recipe = settings.recipe
    probe = create_clip(recipe.clip, normalise_pretrained(recipe.pretrained))
    tokenize = open_clip.get_tokenizer(recipe.clip, context_length=clip_context_length(probe))
    preprocessing = preprocessing_for(probe)
    train = build_tensors(load_split(data_dir / "train.csv"), tokenize, preprocessing, progress, "preprocess train")
    val = build_tensors(load_split(data_dir / "val.csv"), tokenize, preprocessing, progress, "preprocess val")
    return train, val


def _start_ray(settings: TuneSettings) -> bool:
    """A local Ray on the loopback (unless one runs already); True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(
        num_cpus=settings.num_cpus,
        include_dashboard=False,
        object_store_memory=settings.object_store_bytes,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )  # loopback only
    return True


def _fit(train: Any, val: Any, settings: TuneSettings, out_dir: Path, progress: bool) -> Any:
    """Every trial under ASHA; Ray Tune's result grid."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(_trial, train=train, val=val, settings=settings), {"cpu": settings.cpus_per_trial}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(settings),
        tune_config=tune.TuneConfig(scheduler=asha_scheduler(settings), num_samples=settings.num_samples),
        run_config=tune.RunConfig(
            name="ray",
            storage_path=str(out_dir),
            verbose=0,
            callbacks=[_progress_callback(settings.trial_count(), progress)],
        ),
    )
    return tuner.fit()


def trial_rows(grid: Iterable[Any]) -> list[dict[str, Any]]:
    """Per trial: its hyper-parameters, epochs run, scores per epoch, best and last score, error."""
    trials = []
    for result in grid:
        frame = result.metrics_dataframe
        scores = [] if frame is None or SCORE not in frame else [float(s) for s in frame[SCORE]]
        trials.append(
            {
                "config": {k: result.config[k] for k in TUNED},
                "epochs": len(scores),
                "scores": scores,
                "best_score": max(scores) if scores else None,
                "last_score": scores[-1] if scores else None,
                "error": None if result.error is None else str(result.error).splitlines()[0],
            }
        )
    return trials


def _write_results(out_dir: Path, settings: TuneSettings, trials: list[dict], seconds: float) -> dict[str, Any]:
    """``tune_results.json``, ``best_config.json`` and ``tune_trials.png``; returns the summary."""
    finished = [t for t in trials if t["best_score"] is not None]
    if not finished:
        raise RuntimeError("no trial reported a score: " + "; ".join(str(t["error"]) for t in trials))
    best = max(finished, key=lambda t: t["best_score"])
    summary = {
        "model": settings.model,
        "search": settings.search,
        "metric": "mean of Task A and Task C validation weighted F1",
        "settings": asdict(replace(settings, recipe=None)),
        "recipe": asdict(settings.recipe),
        "seconds": round(seconds, 1),
        "best": best,
        "trials": trials,
    }
    (out_dir / "tune_results.json").write_text(json.dumps(summary, indent=2, default=str))
    (out_dir / "best_config.json").write_text(
        json.dumps({**best["config"], "epochs": best["epochs"], "score": best["best_score"]}, indent=2)
    )
    plot_trials(trials, out_dir / "tune_trials.png", f"Ray Tune + ASHA: {settings.model}")
    return summary


def tune_hyperparameters(
    data_dir: Path,
    out_dir: Path,
    settings: TuneSettings,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Search, write the results into ``out_dir`` and return the summary (``tune_results.json``)."""
    import ray

    from training.factory import model_kind

    model_kind(settings.model)  # unknown kinds fail before Ray starts
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = _tensors(data_dir, settings, progress)
    log(
        f"tune {settings.model}: {len(train)} train / {len(val)} val memes, {settings.trial_count()} "
        f"trials ({settings.search}), ASHA max {settings.epochs} epochs, grace {settings.grace_period}, "
        f"reduction {settings.reduction_factor}, {settings.num_cpus} CPUs"
    )
    started_ray = _start_ray(settings)
    started = time.perf_counter()
    try:
        grid = _fit(train, val, settings, out_dir, progress)
    finally:
        if started_ray:
            ray.shutdown()
    return _write_results(out_dir, settings, trial_rows(grid), time.perf_counter() - started)


def format_table(trials: list[dict]) -> str:
    """Trials as a text table, best first."""
    rows = sorted(trials, key=lambda t: -(t["best_score"] if t["best_score"] is not None else -1))
    lines = [f"{'lr':>8} {'wd':>7} {'gamma':>5} {'epochs':>6} {'best':>7} {'last':>7}"]
    for t in rows:
        c = t["config"]
        best = f"{t['best_score']:.4f}" if t["best_score"] is not None else "error"
        last = f"{t['last_score']:.4f}" if t["last_score"] is not None else ""
        lines.append(
            f"{c['lr']:>8.0e} {c['weight_decay']:>7g} {c['focal_gamma']:>5g} {t['epochs']:>6} {best:>7} {last:>7}"
        )
    return "\n".join(lines)


def plot_trials(trials: list[dict], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    for t in trials:
        if t["scores"]:
            c = t["config"]
            ax.plot(
                range(1, len(t["scores"]) + 1),
                t["scores"],
                marker="o",
                lw=1,
                label=f"lr {c['lr']:.0e} wd {c['weight_decay']:g} gamma {c['focal_gamma']:g}",
            )
    ax.set_xlabel("epoch (trials ASHA stopped end early)")
    ax.set_ylabel("validation score (Task A + Task C F1) / 2")
    ax.set_title(title)
    if len(trials) <= 12:
        ax.legend(fontsize=7)
    return save_figure(fig, path)
