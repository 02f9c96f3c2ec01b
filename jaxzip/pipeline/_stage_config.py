"""Config sections of the ``distill`` and ``export`` stages: ``[distill]`` and ``[export]``."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from jaxzip.pipeline._names import ModelName
from jaxzip.pipeline._schema import (
    Section,
    at_least,
    between,
    check_dropout,
    each,
    greater_than,
    nonempty,
    output_file,
    rules,
)

__all__ = ["DistillConfig", "ExportConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig(Section):
    """``[distill]``: train a smaller student from the current model (the teacher) by KD.

    The teacher is the model the earlier stages made: the ``train`` stage's
    trained model, or, to distill from a saved teacher, ``[model]`` with
    ``params_from`` set and no ``train`` stage (or ``train.epochs = 0``). The
    student (``model``, ``widths``, ``dropout_rate``, ``input_dropout_rate`` as in
    ``[model]``) is initialised with the run's key named ``"distill/init"`` and trained for
    ``epochs`` with :func:`jaxzip.distill.make_train_step` and
    ``kd_loss(temperature=temperature, alpha=alpha)``, with ``[train]``'s
    optimizer, schedule, weight decay and batch size at ``learning_rate``. With
    ``augment_shift`` the transfer images are shifted at random inside the step,
    and the teacher labels the same shifted images the student sees (consistent
    views); ``[train]``'s own ``augment_shift`` does not apply here. The student
    then replaces the model for the later stages.

    Example:
      >>> DistillConfig(widths=[16], temperature=2).temperature
      2.0
      >>> DistillConfig(alpha=1.5)
      Traceback (most recent call last):
      ...
      jaxzip.pipeline._schema.FieldError: alpha: expected a number in [0.0, 1.0], got 1.5
    """

    model: ModelName = field(default="mlp", metadata=rules(doc="student model"))
    widths: tuple[int, ...] = field(
        default=(64,),
        metadata=rules(nonempty(), each(at_least(1)), doc='student hidden widths (only "mlp")'),
    )
    dropout_rate: float = field(
        default=0.0,
        metadata=rules(between(0.0, 1.0, hi_open=True), doc='student dropout ("mlp")'),
    )
    input_dropout_rate: float = field(
        default=0.0,
        metadata=rules(
            between(0.0, 1.0, hi_open=True), doc='student dropout on input pixels ("mlp")'
        ),
    )
    temperature: float = field(
        default=4.0, metadata=rules(greater_than(0.0), doc="softmax temperature of the KD term")
    )
    alpha: float = field(
        default=0.9, metadata=rules(between(0.0, 1.0), doc="weight of the KD term (vs. labels)")
    )
    epochs: int = field(default=10, metadata=rules(at_least(1), doc="student training epochs"))
    learning_rate: float = field(
        default=1e-3, metadata=rules(greater_than(0.0), doc="peak learning rate of the student")
    )
    augment_shift: int = field(
        default=0,
        metadata=rules(
            at_least(0),
            doc="random shifts of up to this many pixels, seen by teacher and student (0: off)",
        ),
    )

    def check(self) -> None:
        check_dropout(self.model, self.dropout_rate, "student model")
        check_dropout(self.model, self.input_dropout_rate, "student model", "input_dropout_rate")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportConfig(Section):
    """``[export]``: write the final model as a :mod:`jaxzip.deploy` file that runs without source.

    The weights are the ``[kmeans]`` codebooks when there are any (kept
    compressed in the file), else the params. The input shape is one example
    of the dataset with a batch dimension.

    Example:
      >>> ExportConfig().file
      'model.jzx'
    """

    file: str = output_file("model.jzx")
    polymorphic_batch: bool = field(
        default=True, metadata=rules(doc="the exported function takes any batch size")
    )
