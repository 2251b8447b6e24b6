"""Sweeps: a grid of training configurations submitted as one group of jobs.

A sweep is the product of architectures (or one base configuration, such as a recipe), values
of other settings and seeds. Every configuration is checked before any job is queued, so a typo
in the last value queues nothing. Each job's run records the sweep's id and its
configuration's label (what sets it apart, seeds aside), so the Runs page shows one row per
configuration with the mean and spread over its seeds. With the local runner a sweep queues;
on Ray it runs in parallel across the cluster.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

from fer_core.errors import ConfigError, JobError
from fer_core.jobs.limits import Limits
from fer_core.jobs.runners import Runner
from fer_core.jobs.scheduler import default_runner_name, get_runner, schedule
from fer_core.jobs.store import JobStore
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.validation import check_world, clean_tags

#: The original study's experiments, as registered presets (the Train page's "whole study").
STUDY = tuple(f"study-{x}" for x in "abcdefgh")
MAX_JOBS = 200  # a grid larger than this is more likely a mistake than a plan


@dataclass
class Sweep:
    """A checked grid: ``(label, config)`` pairs, and what it was made from."""

    configs: list[tuple[str, TrainConfig]]
    spec: dict = field(default_factory=dict)


def parse_values(items: list[str]) -> dict[str, list[str]]:
    """``["lr=0.1,0.01", "flip=true"]`` -> ``{"lr": ["0.1", "0.01"], "flip": ["true"]}``.

    Raises:
        ConfigError: an item without ``=`` or without values.
    """
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not parts:
            raise ConfigError(f"--set {item!r}: write it as KEY=V1,V2 (values separated by commas), "
                              "e.g. --set label_smoothing=0,0.1.")
        out[key.strip()] = parts
    return out


def parse_ints(text: str, what: str = "seeds") -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{what} {text!r}: give whole numbers separated by commas, e.g. 0,1,2.") from None
    if not values:
        raise ConfigError(f"--{what}: give at least one value.")
    return list(dict.fromkeys(values))


def make_sweep(base: Callable[[str | None], dict], archs: list[str] | None = None, seeds: list[int] | None = None,
               values: dict[str, list[str]] | None = None) -> Sweep:
    """Every combination of ``archs`` x ``values`` x ``seeds``, each a checked config.

    Args:
        base: the raw configuration for an architecture (None: the base's own), before the
            grid's values: e.g. ``lambda arch: TrainConfig.for_model(arch, data=D, epochs=N).to_dict()``.
        archs: architectures (none: the base's).
        seeds: seeds (none: the base's).
        values: other settings and their values.

    Raises:
        ConfigError: an empty or too large grid, or invalid configurations (the first few, by label).
    """
    archs, values = list(archs or [None]), dict(values or {})
    seeds = list(seeds or [None])
    size = len(archs) * len(seeds) * grid_size(values)
    if size > MAX_JOBS:
        raise ConfigError(f"This sweep has {size} configurations; at most {MAX_JOBS} are submitted at once. "
                          "Split it into smaller sweeps.")
    configs, problems = [], []
    for arch, combo, seed in itertools.product(archs, itertools.product(*values.values()), seeds):
        raw = {**base(arch), **dict(zip(values, combo))}
        if seed is not None:
            raw["seed"] = seed
        parts = ([f"arch={raw.get('arch')}"] if len(archs) > 1 else []) + \
                [f"{k}={v}" for k, v in zip(values, combo) if len(values[k]) > 1]
        label = ", ".join(parts) or str(raw.get("arch"))
        try:
            configs.append((label, check_world(TrainConfig.parse(raw))))
        except ConfigError as exc:
            why = "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) or str(exc)
            problems.append(f"{label} (seed {raw.get('seed')}): {why}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError("Nothing was submitted: " + " | ".join(problems[:3]) + more)
    spec = {"archs": [a for a in archs if a], "seeds": [s for s in seeds if s is not None], "values": values}
    return Sweep(configs, spec)


def grid_size(values: dict[str, list]) -> int:
    """How many combinations the settings' values make."""
    return math.prod(len(v) for v in values.values())


def submit_sweep(sweep: Sweep, store: JobStore | None = None, where: str | None = None, note: str = "",
                 tags: list[str] | tuple[str, ...] | str = (), runner: Runner | None = None,
                 limits: Limits | None = None, mine: list[int] | None = None) -> tuple[int, list[int]]:
    """Queue every configuration of ``sweep`` as one sweep; return ``(sweep id, job ids)``.

    Runs are named ``sweepN-<label>-seedS``; ``where`` is the runner (default: Ray when a
    cluster is set, else this machine). ``limits`` and ``mine`` as for
    :func:`fer_core.jobs.scheduler.submit`: a sweep that would go over a limit is refused whole,
    before anything is queued.
    """
    if store is None:
        with JobStore() as own:
            return submit_sweep(sweep, own, where, note, tags, runner, limits, mine)
    limits = limits or Limits.from_env()
    for _, cfg in sweep.configs:
        limits.check_epochs(cfg.epochs)
    if mine is not None:
        limits.check_session(store.count_waiting(mine), len(sweep.configs))
    full = limits.queue_full(store.count_waiting(), len(sweep.configs))
    if full:
        raise JobError(f"A sweep of {len(sweep.configs)} jobs: {full}")
    where = where or (runner.name if runner is not None else default_runner_name())
    if runner is None:
        get_runner(where)  # a Ray sweep needs a cluster address before anything is queued
    tags = clean_tags(tags)
    sweep_id = store.new_sweep({**sweep.spec, "runner": where, "jobs": len(sweep.configs)})
    requests = [{"cfg": cfg, "sweep_config": label,
                 "name": f"sweep{sweep_id}-{''.join(ch if ch.isalnum() or ch in '-_.' else '-' for ch in label)[:60]}"
                         f"-seed{cfg.seed}"} for label, cfg in sweep.configs]
    # one transaction: the sweep goes in whole or not at all, whatever another submission does meanwhile
    ids = store.submit_many(requests, note=note, tags=tags, sweep=sweep_id, runner=where, max_waiting=limits.queued)
    schedule(store, runner)
    return sweep_id, ids


#: The sweeps the Train page offers.
FORM_SWEEPS = {"seeds": "N seeds of this configuration", "study": "the whole study (experiments A-H)"}


def form_sweep(kind: str, cfg: TrainConfig, seeds: str, epochs: int | None = None) -> Sweep:
    """The Train page's sweeps: ``seeds`` of the form's configuration, or every experiment of the
    study (``study-a`` ... ``study-h`` with their own settings) on the form's data set, each
    with ``seeds`` (a comma-separated string) and ``epochs`` (None: each experiment's own).

    Raises:
        ConfigError: an unknown kind, bad seeds or an invalid configuration.
    """
    seed_list = parse_ints(seeds)
    if kind == "seeds":
        return make_sweep(lambda arch: cfg.to_dict(), seeds=seed_list)
    if kind == "study":
        fixed = {"data": cfg.data, "merge": cfg.merge, **({"epochs": epochs} if epochs else {})}
        return make_sweep(lambda arch: TrainConfig.for_model(arch, **fixed).to_dict(), list(STUDY), seed_list)
    raise ConfigError(f"{kind!r} is not a sweep; choose one of {', '.join(FORM_SWEEPS)}.")
