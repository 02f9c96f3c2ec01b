"""``jaxzip auto`` on a language model (text data): :func:`jaxzip.auto.search_lm` over
per-kernel GPTQ bit widths under a bound on held-out bits per byte, written like the image
search (``config.toml``, the journal, ``best.jz``, ``auto.json``, ``report.md``)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jaxzip import auto as jz_auto
from jaxzip import codec as jz_codec
from jaxzip._io import atomic_write_bytes, atomic_write_json
from jaxzip.config import ExperimentConfig
from jaxzip.pipeline._core_stages import build_model, load_data, train_stage
from jaxzip.pipeline._stage_utils import AUTO_FILE, calibration_batches, jsonable, search_dir
from jaxzip.pipeline._state import RunState

__all__ = ["LM_CALIB", "LM_TABLES", "run_auto_lm"]

LM_TABLES = r".*embed.*"  # a language model's embedding tables, stored as int8 per row
# calibration: windows drawn from the training split, and their batch size
LM_CALIB = SimpleNamespace(calibration_examples=128, calibration_batch_size=16)
_CALIB_KEY = "auto/calibration"  # the run key (config.run_key) that draws them


def run_auto_lm(
    cfg: ExperimentConfig,
    out: Path,
    *,
    max_drop_pct: float,
    time_budget_s: float | None,
    max_trials: int | None,
    progress: bool,
    confirm_fraction: float | None,
    confidence: float = 0.0,
) -> dict[str, Any]:
    """``run_auto`` for a language model (text data): :func:`jaxzip.auto.search_lm` with the
    bound ``max_drop_pct`` read as a relative increase of bits per byte in percent."""
    if not max_drop_pct > 0:
        raise ValueError(
            f"max_drop: for a language model, the allowed increase of bits per byte "
            f"in percent, > 0 (2 is +2%); got {max_drop_pct!r}"
        )
    if confidence:
        raise ValueError(
            f"confidence: {confidence:g} applies to the image search; a language model's "
            "search confirms its result by the relative increase of bits per byte"
        )
    if confirm_fraction is None:
        raise ValueError(
            "confirm_fraction: a language model's search needs a confirmation "
            "split; expected a number in (0, 1), got None"
        )
    space = jz_auto.LMSpace(tables=LM_TABLES)
    seed = int(cfg.experiment.seed)
    settings = {
        "kind": "lm",
        "space": space.to_dict(),
        "confirm_fraction": confirm_fraction,
        "calibration": {
            "windows": LM_CALIB.calibration_examples,
            "batch": LM_CALIB.calibration_batch_size,
            "key": _CALIB_KEY,
        },
        "seed": seed,
    }
    start = time.perf_counter()
    with search_dir(cfg, out, settings) as journal:
        state = RunState(out_dir=out, progress=progress)
        for stage in (load_data, build_model, train_stage):
            state = state.updated(stage(cfg, state)[0])
        s = state.splits
        rank, conf = jz_auto.split_windows(s.val, confirm_fraction, seed=seed)
        calib = calibration_batches(cfg, s.train, LM_CALIB, name=_CALIB_KEY)
        result = jz_auto.search_lm(
            state.apply_fn,
            state.params,
            calib,
            rank,
            conf,
            max_increase=max_drop_pct / 100,
            space=space,
            test=s.test,
            journal=journal,
            time_budget_s=time_budget_s,
            max_trials=max_trials,
            progress=progress,
        )
        atomic_write_bytes(out / jz_auto.BEST_FILE, jz_codec.encode(result.params))
        ref = result.reference["bytes"]
        summary = jsonable(
            {
                "kind": "lm",
                "config_name": cfg.experiment.name,
                "max_drop_pct": max_drop_pct,
                "time_budget_s": time_budget_s,
                "max_trials": max_trials,
                "settings": settings,
                "splits": {
                    "train": len(s.train),
                    "rank": len(rank),
                    "confirm": len(conf),
                    "test": len(s.test),
                    "calibration": sum(len(b) for b in calib),
                },
                "se_method": jz_auto.LM_SE_METHOD,
                "result": result.to_dict(),
                "comparison": {
                    "bytes": result.bytes,
                    "reference_bytes": ref,
                    "ratio_to_reference": result.bytes / ref,
                },
                "wall_time_s": round(time.perf_counter() - start, 3),
                "files": {
                    "best": jz_auto.BEST_FILE,
                    "journal": jz_auto.JOURNAL_FILE,
                    "report": "report.md",
                },
            }
        )
        jz_auto.write_lm_report(summary, out)
        atomic_write_json(out / AUTO_FILE, summary)
        return summary
