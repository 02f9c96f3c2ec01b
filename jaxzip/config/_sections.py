"""Config sections of the optional stages: ``[distill]``, ``[prune]``, ``[kmeans]``,
``[quantize]``, ``[codec]``, ``[export]``."""

from __future__ import annotations

import dataclasses

from jaxzip.config._fields import (
    calibration_fields,
    check_model_fields,
    distill_alpha_field,
    distill_temperature_field,
    dropout_field,
    output_file,
    regex_field,
    transformer_fields,
    where_field,
    widths_field,
    zero_or_bits,
)
from jaxzip.config._names import AllocationName, ModelName, PrunerName, QuantizerName
from jaxzip.config._schema import (
    FieldError,
    Section,
    at_least,
    between,
    greater_than,
    matches,
    setting,
)

__all__ = [
    "CodecConfig",
    "DistillConfig",
    "ExportConfig",
    "KMeansConfig",
    "PruneConfig",
    "QuantizeConfig",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig(Section):
    """``[distill]``: train a smaller student from the current model (the teacher) by KD.

    The teacher is the model the earlier stages made: the ``train`` stage's
    trained model, or, to distill from a saved teacher, ``[model]`` with
    ``params_from`` set and no ``train`` stage (or ``train.epochs = 0``). The
    student (``model``, ``widths``, ``dropout_rate``, ``input_dropout_rate`` and, for
    ``model = "transformer"`` on text, ``num_layers``, ``d_model``, ``num_heads``,
    ``mlp_ratio``, as in ``[model]``; its context is ``data.seq_len``) is initialised
    with the run's key named ``"distill/init"`` and trained for
    ``epochs`` with :func:`jaxzip.distill.make_train_step` and
    ``kd_loss(temperature=temperature, alpha=alpha)``, with ``[train]``'s
    optimizer, schedule, weight decay and batch size at ``learning_rate``. With
    ``augment_shift`` the transfer images are shifted at random inside the step,
    and the teacher labels the same shifted images the student sees (consistent
    views); ``[train]``'s own ``augment_shift`` does not apply here. On token windows
    the loss is averaged over every position of every window (teacher and student see
    the same windows). The student then replaces the model for the later stages.

    Example:
      >>> DistillConfig(widths=[16], temperature=2).temperature
      2.0
      >>> DistillConfig(alpha=1.5)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: alpha: expected a number in [0.0, 1.0], got 1.5
    """

    model: ModelName = setting("mlp", doc="student model")
    widths: tuple[int, ...] = widths_field((64,), 'student hidden widths (only "mlp")')
    dropout_rate: float = dropout_field('student dropout ("mlp")')
    input_dropout_rate: float = dropout_field('student dropout on input pixels ("mlp")')
    num_layers: int
    d_model: int
    num_heads: int
    mlp_ratio: int
    num_layers, d_model, num_heads, mlp_ratio = transformer_fields()
    temperature: float = setting(4.0, greater_than(0.0), doc="softmax temperature of the KD term")
    alpha: float = setting(0.9, between(0.0, 1.0), doc="weight of the KD term (vs. labels)")
    epochs: int = setting(10, at_least(1), doc="student training epochs")
    learning_rate: float = setting(1e-3, greater_than(0.0), doc="peak learning rate of the student")
    augment_shift: int = setting(
        0,
        at_least(0),
        doc="random shifts of up to this many pixels, seen by teacher and student (0: off)",
    )

    def check(self) -> None:
        check_model_fields(self, self.model, "student model")


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
    polymorphic_batch: bool = setting(True, doc="the exported function takes any batch size")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneConfig(Section):
    """``[prune]``: iterative magnitude pruning with retraining, after ``[train]``.

    Round ``r`` of ``rounds`` prunes the selected weights to the sparsity
    ``jaxzip.prune.iterative_rounds(sparsity, rounds=rounds)[r - 1]`` (already
    pruned weights stay pruned), then retrains for ``epochs_per_round`` epochs
    with ``[train]``'s optimizer, schedule, weight decay and augmentation at
    ``learning_rate``, keeping pruned weights at zero. With ``distill_alpha > 0``
    the retraining loss is :func:`jaxzip.distill.kd_loss` (``alpha=distill_alpha``,
    ``temperature=distill_temperature``) with the model before pruning as the
    teacher (in ``jaxzip auto``: the dense baseline, for every candidate).

    ``method = "sparsegpt"`` or ``"wanda"`` prunes once instead (``rounds = 1``), each
    kernel that a matmul or convolution consumes to ``sparsity`` (``allocation =
    "uniform"``), or to ``structure = "N:M"`` (N of every M consecutive weights along the
    kernel's true input axis kept), from ``calibration_examples`` training examples drawn
    with the run's key named ``"prune/calibration"`` (:func:`jaxzip.prune.sparsegpt`
    reconstructs the kept weights, :func:`jaxzip.prune.wanda` keeps them as they are); the
    retraining follows as above.

    Example:
      >>> PruneConfig(sparsity=0.9, rounds=3).allocation
      'global'
      >>> PruneConfig(method="sparsegpt", sparsity=0.5, allocation="uniform").structure
      ''
      >>> PruneConfig(sparsity=1.0)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: sparsity: expected a number in [0.0, 1.0), got 1.0
    """

    sparsity: float = setting(
        0.9, between(0.0, 1.0, hi_open=True), doc="final fraction of the selected weights pruned"
    )
    where: str = where_field("prune")
    allocation: AllocationName = setting("global", doc="how the sparsity is spread over layers")
    rounds: int = setting(1, at_least(1), doc="prune-retrain rounds (iterative pruning)")
    epochs_per_round: int = setting(1, at_least(0), doc="retraining epochs after each round")
    learning_rate: float = setting(0.01, greater_than(0.0), doc="peak learning rate of retraining")
    distill_alpha: float = distill_alpha_field("pruning", "retraining")
    distill_temperature: float = distill_temperature_field()
    method: PrunerName = setting(
        "magnitude", doc="which weights go: smallest |w|, or one-shot SparseGPT / Wanda"
    )
    structure: str = setting(
        "",
        matches(r"|[1-9][0-9]*:[1-9][0-9]*", 'empty or "N:M"'),
        doc='"N:M": keep N of every M weights along each kernel\'s input axis ("sparsegpt", '
        '"wanda"; "" = unstructured)',
    )
    calibration_examples: int
    calibration_batch_size: int
    calibration_examples, calibration_batch_size = calibration_fields('"sparsegpt", "wanda"')

    def n_of_m(self) -> tuple[int, int] | None:
        """``structure`` as ``(N, M)``, or None when unstructured.

        Example:
          >>> PruneConfig(method="wanda", sparsity=0.5, allocation="uniform", structure="2:4").n_of_m()
          (2, 4)
        """
        if not self.structure:
            return None
        n, m = self.structure.split(":")
        return int(n), int(m)

    def check(self) -> None:
        if self.method == "magnitude":
            if self.structure:
                raise FieldError(
                    "structure",
                    '"" with prune.method = "magnitude" (N:M needs "sparsegpt" or "wanda")',
                    self.structure,
                )
            return
        for key, want in (("rounds", 1), ("allocation", "uniform")):
            if getattr(self, key) != want:
                raise FieldError(
                    key, f"{want!r} with prune.method = {self.method!r}", getattr(self, key)
                )
        if self.structure:
            n, m = self.n_of_m()
            if not n < m:
                raise FieldError("structure", '"N:M" with N < M', self.structure)
            if abs(self.sparsity - (m - n) / m) > 1e-9:
                raise FieldError(
                    "sparsity",
                    f"{(m - n) / m:g} with prune.structure = {self.structure!r} ({n} of every "
                    f"{m} kept)",
                    self.sparsity,
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class KMeansConfig(Section):
    """``[kmeans]``: Deep Compression's weight sharing, after ``[train]`` (and ``[prune]``).

    Every selected weight array gets its own k-means codebook: ``conv_bits``
    for 4-D (convolution) kernels, ``dense_bits`` for the others. Pruned
    weights (the ``[prune]`` mask, or exact zeros of loaded params) take no part
    and stay exactly zero. Then the centroids (and the unselected float leaves)
    are fine-tuned with Adam at ``learning_rate`` (cosine decay) for
    ``finetune_epochs`` epochs, with ``[train]``'s batch size and augmentation.
    With ``unshared_bits``, the float leaves left unshared (biases) are then
    stored as integers with one scale per leaf (:func:`jaxzip.quant.quantize_unshared`);
    the evaluated model is the stored one. With ``distill_alpha > 0`` the centroid
    fine-tuning loss is :func:`jaxzip.distill.kd_loss` with the model before weight
    sharing as the teacher (in ``jaxzip auto``: the dense baseline, for every candidate).

    Example:
      >>> KMeansConfig(dense_bits=4).conv_bits
      8
      >>> KMeansConfig(dense_bits=9)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: dense_bits: expected an integer in [1, 8], got 9
    """

    dense_bits: int = setting(5, between(1, 8), doc="index bits of non-conv (Dense) codebooks")
    conv_bits: int = setting(8, between(1, 8), doc="index bits of 4-D (Conv) kernel codebooks")
    where: str = where_field("share")
    iters: int = setting(20, at_least(1), doc="Lloyd iterations per layer")
    finetune_epochs: int = setting(1, at_least(0), doc="centroid fine-tuning epochs (0: none)")
    learning_rate: float = setting(
        1e-4, greater_than(0.0), doc="peak Adam learning rate of centroids"
    )
    unshared_bits: int = setting(
        0,
        zero_or_bits(),
        doc="bits of the float leaves not shared (biases): one scale per leaf, after "
        "fine-tuning (0: float32)",
    )
    distill_alpha: float = distill_alpha_field("weight sharing", "centroid fine-tuning")
    distill_temperature: float = distill_temperature_field()


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizeConfig(Section):
    """``[quantize]``: one-shot weight quantization from calibration data, no retraining.

    The kernels are the ``where``-selected leaves that a matmul or convolution of the model
    consumes, found by tracing it (:func:`jaxzip.layout.trace_layouts`), each with its own
    input and output axes: one scale (and with ``symmetric = false`` one zero point) per
    output channel, or per group of ``group_size`` inputs along the kernel's last input
    axis. Where that axis is shorter than ``group_size`` (an attention head), it is one
    group; where it is longer and not a multiple, the run stops naming the kernel and the
    sizes that work. ``method = "gptq"`` (:func:`jaxzip.quant.gptq`) quantizes the kernels
    in traced order, each calibrated on the outputs of the already-quantized earlier ones,
    from ``calibration_examples`` training examples drawn with the run's key named
    ``"quantize/calibration"``; ``"rtn"`` rounds each weight to the nearest grid point.
    With ``table_bits``, the leaves ``tables`` selects that no matmul consumes (embedding
    tables) are rounded to that many bits with one scale per row. The quantized tree is what
    ``encode`` writes (bit-packed, :mod:`jaxzip.codec`) and ``export`` runs; ``evaluate``
    reports the model it decodes to. After ``[prune]`` the pruned weights stay exactly zero
    (GPTQ sets each to zero as it reaches it and spreads that error over the inputs not yet
    quantized); ``[kmeans]`` and ``[quantize]`` do not combine.

    Example:
      >>> QuantizeConfig(bits=3, group_size=64).method
      'gptq'
      >>> QuantizeConfig(bits=1)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: bits: expected an integer in [2, 8], got 1
    """

    method: QuantizerName = setting("gptq", doc="how the kernels are rounded: GPTQ, or to nearest")
    bits: int = setting(4, between(2, 8), doc="bits per kernel weight")
    group_size: int = setting(
        0, at_least(0), doc="inputs per scale along each kernel's last input axis (0: all)"
    )
    symmetric: bool = setting(
        False, doc="grid symmetric about 0 (false: min-max with a zero point)"
    )
    where: str = where_field("quantize")
    calibration_examples: int
    calibration_batch_size: int
    calibration_examples, calibration_batch_size = calibration_fields('"gptq"')
    damp: float = setting(
        0.01, greater_than(0.0), doc='Hessian dampening, relative to its mean diagonal ("gptq")'
    )
    act_order: bool = setting(
        False, doc='quantize inputs in order of decreasing activation ("gptq")'
    )
    table_bits: int = setting(
        0, zero_or_bits(), doc="bits of the embedding tables, one scale per row (0: float32)"
    )
    tables: str = regex_field(
        ".*embed.*", "the tables table_bits rounds: regex of leaves no matmul consumes"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CodecConfig(Section):
    """``[codec]``: the compressed file written after ``evaluate`` (see :mod:`jaxzip.codec`).

    Without a ``[codec]`` section, a run with ``[kmeans]`` or ``[quantize]`` writes the
    file with these defaults.

    Example:
      >>> CodecConfig().file
      'model.jz'
    """

    file: str = output_file("model.jz")
    write: bool = setting(True, doc="write (and verify) the file")
