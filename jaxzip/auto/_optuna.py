"""The optional multi-objective strategy: Optuna's NSGA-II over per-layer choices."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax

from jaxzip.auto._space import SearchSpace
from jaxzip.auto._trials import Trials

__all__ = ["Optuna", "optuna_search", "require_optuna"]


@dataclasses.dataclass(frozen=True)
class Optuna:
    """NSGA-II over the per-layer choices (``pip install optuna``), returning the Pareto front.

    Runs ``max_trials`` trials (default 50); objectives: bytes (min) and
    accuracy (max). The sampler's seed is drawn from the search's key.

    Example:
      >>> Optuna().name
      'optuna'
    """

    name: ClassVar[str] = "optuna"
    """The strategy's name in results and journals."""

    def require(self) -> None:
        """Raises ImportError (saying how to install it) when optuna is missing."""
        require_optuna()

    def run(
        self, trials: Trials, space: SearchSpace, *, key: jax.Array, max_trials: int | None
    ) -> None:
        """Runs the search through ``trials`` (which enforce the budgets)."""
        optuna_search(trials, space, key=key, max_trials=max_trials)


def require_optuna() -> Any:
    """Imports optuna, or raises ImportError saying how to install it."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError(
            f"strategy 'optuna' needs optuna: pip install optuna ({e}); or use strategy 'greedy'"
        ) from None
    return optuna


def optuna_search(
    trials: Trials, space: SearchSpace, *, key: jax.Array, max_trials: int | None
) -> None:
    """Asks NSGA-II (seeded) for per-layer choices; objectives: bytes (min), accuracy (max).

    Every candidate goes through ``trials`` (journaled, replayed when already
    there). Optuna's sampler takes only an int seed: it is drawn from ``key``
    (the one place a key becomes an int, for a library outside JAX). Optuna's
    suggestions depend only on that seed and the values told, so a rerun
    replays the same sequence. Stops at ``max_trials`` (default
    50) or when ``trials`` raises the budget exception.
    """
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    sampler = optuna.samplers.NSGAIISampler(seed=seed)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    n = 50 if max_trials is None else max_trials
    for _ in range(n):
        t = study.ask()
        sp = {
            p: t.suggest_categorical(f"sparsity[{p}]", list(space.sparsities))
            for p in trials.layers
        }
        bt = {p: t.suggest_categorical(f"bits[{p}]", list(space.bits)) for p in trials.layers}
        rec = trials.candidate(sp, bt)  # raises BudgetExhausted between trials
        study.tell(t, [float(rec["bytes"]), float(rec["accuracy"])])
