"""Automatic student construction: width multipliers of a model family under a size budget.

Each candidate student is the family scaled by a multiplier; those over the
budget are recorded as skipped, the rest are trained by distillation from the
teacher (:func:`jaxzip.distill.fit`) and scored on a validation set.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax
from tqdm.auto import tqdm

from jaxzip._errors import DataError
from jaxzip._keys import check_key, named_key
from jaxzip._types import Params
from jaxzip.auto._families import CNNFamily, Family, MLPFamily, _is_int, _multiplier
from jaxzip.codec import encode
from jaxzip.data import Dataset
from jaxzip.distill import Loss, kd_loss
from jaxzip.distill import fit as distill_fit
from jaxzip.models import ApplyFn, init_params, linen_apply_fn, param_count
from jaxzip.train import evaluate


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentRecord:
    """One candidate of :func:`search_students`.

    Attributes:
      multiplier: the width multiplier.
      widths: the candidate's hidden widths (for a CNN: channels, then dense widths).
      params: its number of parameters.
      f32_bytes: its size stored as float32 (``4 * params``); the budget's measure.
      encoded_bytes: the size of the trained params as a :func:`jaxzip.codec.encode`
        file, or None when skipped.
      val_accuracy: validation accuracy after distillation, or None when skipped.
      train_loss: the distillation loss averaged over the last epoch; None when
        skipped or when it is not finite (training diverged).
      seconds: wall time spent on it (training and evaluation).
      skipped: why it was not trained (over the budget, a repeated architecture),
        or None when it was trained.
    """

    multiplier: float
    widths: tuple[int, ...]
    params: int
    f32_bytes: int
    encoded_bytes: int | None = None
    val_accuracy: float | None = None
    train_loss: float | None = None
    seconds: float = 0.0
    skipped: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentSearchResult:
    """What :func:`search_students` found: one record per candidate, in the given order.

    Attributes:
      family: the model family searched.
      budget_params: the parameter budget, or None.
      budget_bytes: the float32-bytes budget, or None.
      teacher_val_accuracy: the teacher's accuracy on the same validation set.
      records: one :class:`StudentRecord` per multiplier.
      best_params: the trained params of :attr:`best` (None when infeasible or
        read back with :meth:`from_json`); not compared, not in the JSON.
    """

    family: Family
    budget_params: int | None
    budget_bytes: int | None
    teacher_val_accuracy: float
    records: tuple[StudentRecord, ...]
    best_params: Params | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def best(self) -> StudentRecord | None:
        """The most accurate trained candidate (fewer params on a tie), or None."""
        trained = [r for r in self.records if r.skipped is None]
        return max(trained, key=lambda r: (r.val_accuracy, -r.params), default=None)

    @property
    def feasible(self) -> bool:
        """Whether any candidate fitted the budget (and so was trained)."""
        return self.best is not None

    def to_json(self) -> str:
        """The result (without params) as JSON text; :meth:`from_json` reads it back."""
        family = {"kind": "mlp" if isinstance(self.family, MLPFamily) else "cnn"}
        family |= dataclasses.asdict(self.family)
        data = {
            "family": family,
            "budget_params": self.budget_params,
            "budget_bytes": self.budget_bytes,
            "teacher_val_accuracy": self.teacher_val_accuracy,
            "feasible": self.feasible,
            "best_multiplier": None if self.best is None else self.best.multiplier,
            "records": [dataclasses.asdict(r) for r in self.records],
        }
        return json.dumps(data, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> StudentSearchResult:
        """Reads :meth:`to_json`'s text back (``best_params`` is None).

        Raises:
          DataError: the text is not such a JSON document.
        """
        try:
            data = json.loads(text)
            fam = dict(data["family"])
            kind = fam.pop("kind")
            fam = {k: tuple(v) if isinstance(v, list) else v for k, v in fam.items()}
            family = {"mlp": MLPFamily, "cnn": CNNFamily}[kind](**fam)
            records = tuple(
                StudentRecord(**(r | {"widths": tuple(r["widths"])})) for r in data["records"]
            )
            return cls(
                family=family,
                budget_params=data["budget_params"],
                budget_bytes=data["budget_bytes"],
                records=records,
                teacher_val_accuracy=data["teacher_val_accuracy"],
            )
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(
                f"StudentSearchResult.from_json: not a student search result: {e}"
            ) from e


def _check_search_args(
    where: str,
    family: Any,
    train_ds: Any,
    val_ds: Any,
    multipliers: Any,
    budgets: tuple[Any, Any],
    ints: dict[str, tuple[Any, int]],
    learning_rate: Any,
) -> list[float]:
    if not isinstance(family, (MLPFamily, CNNFamily)):
        raise TypeError(f"{where}: family must be an MLPFamily or CNNFamily, got {family!r}")
    for name, ds in (("train_ds", train_ds), ("val_ds", val_ds)):
        if not isinstance(ds, Dataset) or len(ds) == 0:
            raise TypeError(f"{where}: {name} must be a non-empty jaxzip.data.Dataset, got {ds!r}")
    if (val_ds.num_classes, val_ds.x.shape[1:]) != (train_ds.num_classes, train_ds.x.shape[1:]):
        raise ValueError(f"{where}: val_ds ({val_ds!r}) does not match train_ds ({train_ds!r})")
    if isinstance(multipliers, (str, bytes)) or not isinstance(multipliers, Sequence):
        raise TypeError(f"{where}: multipliers must be a sequence of numbers, got {multipliers!r}")
    ms = [_multiplier(where, m) for m in multipliers]
    if not ms or len(set(ms)) != len(ms):
        raise ValueError(f"{where}: multipliers must be non-empty, distinct; got {multipliers!r}")
    if (budgets[0] is None) == (budgets[1] is None):
        raise ValueError(
            f"{where}: give exactly one of budget_params and budget_bytes, got "
            f"budget_params={budgets[0]!r}, budget_bytes={budgets[1]!r}"
        )
    for name, (value, lo) in ints.items():
        if (value is not None or not name.startswith("budget")) and not (
            _is_int(value) and value >= lo
        ):
            raise ValueError(f"{where}: {name} must be an int >= {lo}, got {value!r}")
    if ints["batch_size"][0] > len(train_ds):
        raise ValueError(
            f"{where}: batch_size={ints['batch_size'][0]} exceeds the "
            f"{len(train_ds)} training examples"
        )
    lr = learning_rate
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or not (math.isfinite(lr) and lr > 0)
    ):
        raise ValueError(f"{where}: learning_rate must be a finite float > 0, got {lr!r}")
    return ms


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _skip_reason(
    records: list[StudentRecord],
    widths: tuple[int, ...],
    n: int,
    budget_params: int | None,
    budget_bytes: int | None,
) -> str | None:
    twin = next((r for r in records if r.widths == widths), None)
    if twin is not None:
        return f"same widths as multiplier {twin.multiplier}"
    if budget_params is not None and n > budget_params:
        return f"over budget: {n} params > {budget_params}"
    if budget_bytes is not None and 4 * n > budget_bytes:
        return f"over budget: {4 * n} float32 bytes > {budget_bytes}"
    return None


def search_students(
    family: Family,
    *,
    teacher_apply: ApplyFn,
    teacher_params: Params,
    train_ds: Dataset,
    val_ds: Dataset,
    multipliers: Sequence[float],
    budget_params: int | None = None,
    budget_bytes: int | None = None,
    loss: Loss | None = None,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    optimizer: Callable[[optax.Schedule], optax.GradientTransformation] = optax.adam,
    key: jax.Array,
    progress: bool = False,
) -> StudentSearchResult:
    """Trains each student of ``family`` that fits the budget by distillation; keeps the best.

    For each multiplier, in order, the student ``family.build(m, num_classes)`` is
    sized from its shapes alone (``jax.eval_shape``, nothing computed). A student
    over the budget (``params > budget_params`` or ``4 * params > budget_bytes``)
    or with the widths of an earlier candidate is recorded as skipped, untrained.
    Every other student starts from ``fold_in(named_key(key, "init"), i)`` (``i``
    its position) and is trained for ``epochs`` by :func:`jaxzip.distill.fit`
    over the same shuffles (key ``named_key(key, "train")``) with
    ``optimizer(optax.cosine_decay_schedule(learning_rate, total_steps))``, the
    teacher's params passed to every step; then it is scored on ``val_ds`` and its
    trained params encoded with :func:`jaxzip.codec.encode` to record the file size.

    Candidates are trained one after another: students of different widths
    cannot be stacked, so :func:`jaxzip.distill.make_vmapped_train_step` (K
    students of one shape at once) does not apply across a width search.

    A budget that no candidate fits is not an error: the result has
    ``feasible=False``, ``best=None`` and every record says why it was skipped.

    Args:
      family: an :class:`MLPFamily` or :class:`CNNFamily`.
      teacher_apply: the teacher's ``apply_fn(params, x, *, train, key)``.
      teacher_params: the teacher's params.
      train_ds: the distillation set; its ``num_classes`` sizes the students.
      val_ds: the validation set that ranks the candidates (not the test set).
      multipliers: distinct width multipliers, each finite and > 0.
      budget_params: the most parameters a student may have (give this or
        ``budget_bytes``, not both).
      budget_bytes: the most float32 bytes (``4 * params``) a student may take.
      loss: the distillation loss; None means ``kd_loss(temperature=4.0, alpha=0.9)``.
      epochs: training epochs per candidate (>= 1).
      batch_size: examples per step (1 to ``len(train_ds)``).
      learning_rate: the peak learning rate (> 0), decayed by a cosine.
      optimizer: an optax optimizer constructor taking the learning-rate schedule
        (``optax.adam``, ``optax.sgd``, ``functools.partial(optax.adamw, weight_decay=1e-4)``).
      key: the PRNG key of the inits and the shuffles.
      progress: show a progress bar over the candidates on stderr.

    Returns:
      A :class:`StudentSearchResult`.

    Raises:
      TypeError: a wrong type for ``family``, a dataset, a multiplier or ``loss``.
      ValueError: empty, repeated or non-positive multipliers; both or neither
        budget; a non-positive budget, epoch count, batch size or learning rate;
        datasets that disagree; teacher logits not of shape ``(N, num_classes)``.

    Example:
      A budget that no candidate fits: nothing is trained (``budget_params=30``
      would distill the first one and make it ``result.best``):

      >>> import jax, numpy as np
      >>> from jaxzip.data import Dataset
      >>> from jaxzip.models import MLP, linen_apply_fn
      >>> rng = np.random.default_rng(0)
      >>> ds = Dataset(x=rng.uniform(size=(32, 2, 2, 1)).astype(np.float32),
      ...              y=rng.integers(0, 2, 32).astype(np.int32), num_classes=2, name="toy")
      >>> teacher = MLP((8,), num_classes=2)
      >>> kwargs = dict(teacher_apply=linen_apply_fn(teacher),
      ...     teacher_params=init_params(teacher, jax.random.key(0), ds.x[:1]),
      ...     train_ds=ds, val_ds=ds, epochs=1, batch_size=32, learning_rate=1e-2,
      ...     key=jax.random.key(0))
      >>> [(m, MLPFamily(widths=(8,)).widths_for(m)) for m in (0.5, 1.0)]
      [(0.5, (4,)), (1.0, (8,))]
      >>> result = search_students(MLPFamily(widths=(8,)), multipliers=[0.5, 1.0],
      ...                          budget_params=20, **kwargs)
      >>> result.feasible, [(r.params, r.skipped) for r in result.records]
      (False, [(30, 'over budget: 30 params > 20'), (58, 'over budget: 58 params > 20')])
    """
    where = "search_students"
    ints = {
        "budget_params": (budget_params, 1),
        "budget_bytes": (budget_bytes, 1),
        "epochs": (epochs, 1),
        "batch_size": (batch_size, 1),
    }
    ms = _check_search_args(
        where,
        family,
        train_ds,
        val_ds,
        multipliers,
        (budget_params, budget_bytes),
        ints,
        learning_rate,
    )
    check_key(where, key)
    loss = kd_loss(temperature=4.0, alpha=0.9) if loss is None else loss
    if not callable(loss) or not callable(teacher_apply):
        raise TypeError(
            f"{where}: loss and teacher_apply must be callable, got {loss!r}, {teacher_apply!r}"
        )
    classes, example = train_ds.num_classes, train_ds.x[:1]
    t_out = jax.eval_shape(
        lambda p: teacher_apply(p, example, train=False, key=None), teacher_params
    )
    if getattr(t_out, "shape", None) != (1, classes):
        raise ValueError(
            f"{where}: the teacher must return logits of shape (N, {classes}) for train_ds's "
            f"{classes} classes, got {getattr(t_out, 'shape', t_out)} for N=1"
        )
    teacher_acc = evaluate(teacher_apply, teacher_params, val_ds)["accuracy"]
    if not callable(optimizer):
        raise TypeError(f"{where}: optimizer must be an optax constructor, got {optimizer!r}")
    total_steps = epochs * (len(train_ds) // batch_size)
    tx = optimizer(optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps))
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(
            f"{where}: optimizer(schedule) must return an optax.GradientTransformation, got {tx!r}"
        )
    records: list[StudentRecord] = []
    best_params, best_key = None, None
    bar = tqdm(ms, desc="students", disable=not progress, file=sys.stderr)
    init_key, train_key = named_key(key, "init"), named_key(key, "train")
    for i, m in enumerate(bar):
        start, student_key = time.perf_counter(), jax.random.fold_in(init_key, i)
        widths, module = family.widths_for(m), family.build(m, classes)
        shapes = jax.eval_shape(lambda k, mod=module: init_params(mod, k, example), student_key)
        n = param_count(shapes)
        size = {"multiplier": m, "widths": widths, "params": n, "f32_bytes": 4 * n}
        reason = _skip_reason(records, widths, n, budget_params, budget_bytes)
        if reason is not None:
            records.append(StudentRecord(**size, skipped=reason))
            continue
        apply_fn = linen_apply_fn(module)
        # One compiled init: eager init compiles each initializer op for every new shape.
        params = jax.jit(lambda k, x, mod=module: init_params(mod, k, x))(student_key, example)
        state, history = distill_fit(
            apply_fn,
            params,
            tx,
            train_ds,
            teacher_apply=teacher_apply,
            teacher_params=teacher_params,
            loss=loss,
            epochs=epochs,
            batch_size=batch_size,
            key=train_key,
            progress=False,
            desc=where,
        )
        acc = evaluate(apply_fn, state.params, val_ds)["accuracy"]
        params = jax.device_get(state.params)
        records.append(
            StudentRecord(
                **size,
                encoded_bytes=len(encode(params)),
                val_accuracy=acc,
                train_loss=_finite_or_none(history[-1]["train_loss"]),
                seconds=time.perf_counter() - start,
            )
        )
        if best_key is None or (acc, -n) > best_key:
            best_params, best_key = params, (acc, -n)
            bar.set_postfix(best=f"x{m:g} {acc:.4f}")
    return StudentSearchResult(
        family=family,
        budget_params=budget_params,
        budget_bytes=budget_bytes,
        teacher_val_accuracy=teacher_acc,
        records=tuple(records),
        best_params=best_params,
    )
