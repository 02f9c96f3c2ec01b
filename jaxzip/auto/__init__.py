"""Automation: per-layer sensitivity, accuracy-bounded compression search, students, reports.

``search`` finds per-layer sparsities and k-means bit widths giving the smallest
compressed file (measured with :mod:`jaxzip.codec`) whose accuracy, judged by the
caller's ``eval_fn``, stays within ``max_drop`` of the baseline. Every trial is
journaled as it finishes, so a killed search resumes without redoing work.
``search_students`` builds students from a model family (:class:`MLPFamily`,
:class:`CNNFamily`) scaled by width multipliers under a size budget, each
trained by distillation from the teacher.

Example:
  >>> import jax.numpy as jnp
  >>> import jaxzip as jz
  >>> p = {"w": jnp.linspace(-1.0, 1.0, 16)}
  >>> s = jz.auto.sensitivity(p, lambda q: float(q["w"].sum() + 1), where="w",
  ...                         sparsities=(0.5,), bits=(2,))
  >>> s.layers
  ('w',)
"""

from jaxzip.auto._confirm import (
    BudgetTooSmall,
    NoisyBoundWarning,
    check_resolution,
    min_confirm_size,
)
from jaxzip.auto._drops import (
    PAIRED_SE_METHOD,
    SE_METHOD,
    discordant,
    drop_se,
    drop_summary,
    paired_drop_se,
    result_drops,
)
from jaxzip.auto._families import CNNFamily, MLPFamily, ScaledCNN, scale_widths
from jaxzip.auto._greedy import Greedy
from jaxzip.auto._journal import Journal, config_hash
from jaxzip.auto._lm import search_lm
from jaxzip.auto._lm_build import split_windows
from jaxzip.auto._lm_report import write_lm_report
from jaxzip.auto._lm_space import LM_SE_METHOD, LMSearchResult, LMSpace
from jaxzip.auto._optuna import Optuna
from jaxzip.auto._report import write_report
from jaxzip.auto._search import JOURNAL_FILE, Strategy, search
from jaxzip.auto._sensitivity import Sensitivity, plot_sensitivity, probe, sensitivity
from jaxzip.auto._space import SearchResult, SearchSpace, pareto_front
from jaxzip.auto._student_plot import plot_students
from jaxzip.auto._students import StudentRecord, StudentSearchResult, search_students
from jaxzip.auto._trials import BEST_FILE, BEST_JSON

__all__ = [
    "BEST_FILE",
    "BEST_JSON",
    "JOURNAL_FILE",
    "LM_SE_METHOD",
    "PAIRED_SE_METHOD",
    "SE_METHOD",
    "BudgetTooSmall",
    "CNNFamily",
    "Greedy",
    "Journal",
    "LMSearchResult",
    "LMSpace",
    "MLPFamily",
    "NoisyBoundWarning",
    "Optuna",
    "ScaledCNN",
    "SearchResult",
    "SearchSpace",
    "Sensitivity",
    "Strategy",
    "StudentRecord",
    "StudentSearchResult",
    "check_resolution",
    "config_hash",
    "discordant",
    "drop_se",
    "drop_summary",
    "min_confirm_size",
    "paired_drop_se",
    "pareto_front",
    "plot_sensitivity",
    "plot_students",
    "probe",
    "result_drops",
    "scale_widths",
    "search",
    "search_lm",
    "search_students",
    "sensitivity",
    "split_windows",
    "write_lm_report",
    "write_report",
]
