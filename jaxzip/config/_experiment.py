"""The experiment config: one frozen dataclass per TOML section.

Every field has a default, so a config file states only what differs. To add a
section (``[prune]``, ``[quant]``, ...), write a :class:`~jaxzip.config._schema.Section`
dataclass and add it as a field of :class:`ExperimentConfig`; the loader, the
``--set`` overrides and the TOML writer pick it up from the type hints. A
section that may be absent is typed ``XConfig | None = None`` (``[prune]`` is one).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxzip.config._fields import (
    check_model_fields,
    dropout_field,
    transformer_fields,
    widths_field,
)
from jaxzip.config._names import (
    TOKEN_MODELS,
    ModelName,
    OptimizerName,
    ScheduleName,
)
from jaxzip.config._plan import STAGE_NAMES, check_stages
from jaxzip.config._schema import (
    FieldError,
    HintedFieldError,
    Section,
    SectionError,
    at_least,
    between,
    greater_than,
    matches,
    setting,
)
from jaxzip.config._sections import (
    CodecConfig,
    DistillConfig,
    ExportConfig,
    KMeansConfig,
    PruneConfig,
    QuantizeConfig,
)
from jaxzip.data import DATASETS, TEXT_DATASETS

DatasetName = Literal[DATASETS]  # "digits", "mnist", "fashion_mnist", "kjv", "idx"
StageName = Literal[STAGE_NAMES]  # "data", "model", "train", "distill", ...


SEED_MAX = 2**63 - 1
"""The largest ``experiment.seed``: ``jax.random.key`` takes a signed 64-bit integer."""
MAX_SEQ_LEN = 8192
"""The longest ``data.seq_len``: attention over a window costs ``seq_len**2`` per head."""

RESERVED_FILES = frozenset(
    [
        "config.toml",
        "params.npz",
        "results.json",
        "report.md",
        "stages",
        ".pending",
        ".jaxzip.lock",
        "journal.jsonl",
        "best.jz",
        "best.json",
        "auto.json",
    ]
)
"""Names jaxzip run / jaxzip auto write or keep in the output directory themselves: a
``[codec]`` or ``[export]`` file may not take one of them (it would overwrite a result)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentSection(Section):
    """``[experiment]``: what the run is called, its one seed and, optionally, its stages.

    ``stages`` lists the stages to run in order (see
    :data:`jaxzip.config.STAGE_NAMES`); the empty default derives them from
    the sections present (see :func:`jaxzip.config.stage_names`). Whether the
    order can work is checked by :class:`ExperimentConfig`.

    Example:
      >>> ExperimentSection(name="lenet5_mnist", seed=1).seed
      1
    """

    name: str = setting(
        "digits_small_cnn",
        matches(r"[A-Za-z0-9][A-Za-z0-9._-]*", "made of letters, digits, '.', '_', '-'"),
        doc="run name; the default output directory is runs/<name>",
    )
    seed: int = setting(
        0,
        between(0, SEED_MAX),
        doc="the data split's seed and the run's root key (init, shuffles, dropout keys "
        "are split from jax.random.key(seed) by name)",
    )
    stages: tuple[StageName, ...] = setting(
        (),
        doc="stages to run, in order ([] = derived from the sections present): "
        + ", ".join(f'"{n}"' for n in STAGE_NAMES),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
    """``[data]``: which dataset and how to split off validation.

    The text corpus ``"kjv"`` is cut into windows of ``seq_len`` bytes labelled
    with the next bytes (see :func:`jaxzip.data.load_splits`): validation and
    test are the two halves of the held-out text (its last 10% of lines), so
    ``val_fraction`` does not apply to it. ``"idx"`` is your own MNIST-style
    dataset: the four IDX files in ``data_dir`` (:func:`jaxzip.data.load_idx_dir`).

    Example:
      >>> DataConfig(name="mnist", val_fraction=0.1).name
      'mnist'
      >>> DataConfig(name="kjv", seq_len=16, train_windows=64).seq_len
      16
    """

    name: DatasetName = setting("digits", doc="dataset")
    data_dir: str = setting(
        "", doc='directory holding the files; "" = the lookup order ("idx": required)'
    )
    val_fraction: float = setting(
        0.1, between(0.0, 1.0, lo_open=True, hi_open=True), doc="training share held out"
    )
    download: bool = setting(True, doc="download MNIST-family files when not found")
    seq_len: int = setting(
        128, between(1, MAX_SEQ_LEN), doc='tokens per window, the model\'s context ("kjv")'
    )
    train_windows: int = setting(
        0,
        at_least(0),
        doc='training windows at random offsets ("kjv"; 0: every non-overlapping window)',
    )
    held_out_windows: int = setting(
        0, at_least(0), doc='at most this many val and test windows each ("kjv"; 0: all)'
    )

    def check(self) -> None:
        if self.name == "idx" and not self.data_dir:
            raise FieldError(
                "data_dir", 'the directory of your IDX files for data.name "idx"', self.data_dir
            )
        if self.name == "digits" and self.data_dir:
            raise FieldError(
                "data_dir", '"" for data.name "digits" (bundled with scikit-learn)', self.data_dir
            )
        for key in ("train_windows", "held_out_windows"):
            if self.name not in TEXT_DATASETS and getattr(self, key):
                raise FieldError(
                    key,
                    f"0 for data.name {self.name!r} (only text datasets "
                    f"{list(TEXT_DATASETS)} are cut into windows)",
                    getattr(self, key),
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig(Section):
    """``[model]``: the network.

    ``"transformer"`` (:class:`jaxzip.models.Transformer`, for ``data.name =
    "kjv"``) takes ``num_layers``, ``d_model``, ``num_heads`` and ``mlp_ratio``;
    its context is ``data.seq_len`` and its vocabulary the data's.

    Example:
      >>> ModelConfig(name="mlp", widths=[64, 32]).widths
      (64, 32)
      >>> ModelConfig(name="transformer", d_model=32, num_heads=3)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: num_heads: expected a divisor of d_model = 32, got 3
    """

    name: ModelName = setting("small_cnn", doc="model")
    widths: tuple[int, ...] = widths_field((256, 128), 'hidden widths (only for "mlp")')
    dropout_rate: float = dropout_field('dropout after each hidden layer ("mlp")')
    input_dropout_rate: float = dropout_field('dropout on input pixels ("mlp")')
    params_from: str = setting(
        "", doc='start from saved params (.npz; relative to the current dir); "" = fresh init'
    )
    num_layers: int
    d_model: int
    num_heads: int
    mlp_ratio: int
    num_layers, d_model, num_heads, mlp_ratio = transformer_fields()

    def check(self) -> None:
        check_model_fields(self, self.name, "model")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """``[train]``: the optimizer and training loop.

    Example:
      >>> TrainConfig(epochs=3, learning_rate=1).learning_rate
      1.0
    """

    epochs: int = setting(
        10,
        at_least(0),
        doc="passes over the training set (0 = no training; needs model.params_from)",
    )
    batch_size: int = setting(64, at_least(1), doc="examples per step")
    optimizer: OptimizerName = setting("adam", doc="optimizer")
    learning_rate: float = setting(1e-3, greater_than(0.0), doc="peak learning rate")
    schedule: ScheduleName = setting(
        "constant", doc="learning-rate schedule (the cosine ones decay to 0)"
    )
    warmup_epochs: float = setting(
        0.0, at_least(0.0), doc='linear warmup from 0, in epochs ("warmup_cosine")'
    )
    weight_decay: float = setting(
        0.0, at_least(0.0), doc="kernel weight decay (L2; decoupled for adamw)"
    )
    momentum: float = setting(0.9, between(0.0, 1.0, hi_open=True), doc='for "sgd"')
    eval_batch_size: int = setting(1000, at_least(1), doc="examples per evaluation batch")
    augment_shift: int = setting(
        0, at_least(0), doc="random image shifts of up to this many pixels while training (0: off)"
    )
    clip_norm: float = setting(
        0.0, at_least(0.0), doc="clip gradients to this global norm (0: off)"
    )

    def check(self) -> None:
        if self.schedule != "warmup_cosine" and self.warmup_epochs != 0:
            raise FieldError(
                "warmup_epochs",
                f'0.0 with train.schedule = {self.schedule!r} (only "warmup_cosine" warms up)',
                self.warmup_epochs,
            )
        # train.epochs = 0: the schedule serves only the retraining stages (their own epochs)
        if self.schedule == "warmup_cosine" and not (
            self.warmup_epochs > 0 and (self.epochs == 0 or self.warmup_epochs < self.epochs)
        ):
            within = f"in (0, train.epochs = {self.epochs})" if self.epochs else "> 0"
            raise FieldError(
                "warmup_epochs",
                f'a number {within} with train.schedule = "warmup_cosine"',
                self.warmup_epochs,
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig(Section):
    """A whole experiment: one field per TOML section.

    Build it with :func:`load_config`; or directly, for scripts and tests.

    Example:
      >>> cfg = ExperimentConfig(train=TrainConfig(epochs=2))
      >>> cfg.train.epochs, cfg.data.name
      (2, 'digits')
    """

    experiment: ExperimentSection = dataclasses.field(default_factory=ExperimentSection)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    prune: PruneConfig | None = None
    kmeans: KMeansConfig | None = None
    quantize: QuantizeConfig | None = None
    codec: CodecConfig | None = None
    distill: DistillConfig | None = None
    export: ExportConfig | None = None

    def check(self) -> None:
        check_stages(self)
        files = {
            k: s.file
            for k, s in (("codec.file", self.codec), ("export.file", self.export))
            if s is not None
        }
        for key, name in files.items():
            if name in RESERVED_FILES:
                raise HintedFieldError(
                    key,
                    "a file name the run does not write itself",
                    name,
                    "the run writes or keeps "
                    + ", ".join(sorted(RESERVED_FILES))
                    + " in the output directory",
                )
        if len(set(files.values())) < len(files):
            raise HintedFieldError(
                "export.file",
                "a name other than codec.file",
                files["export.file"],
                "both would be written to one file",
            )
        self._check_data_fits_model()
        if self.quantize is not None:
            self._check_quantize_beside_kmeans()
        if self.train.epochs == 0 and not self.model.params_from:
            raise HintedFieldError(
                "train.epochs",
                "an integer >= 1",
                self.train.epochs,
                "0 skips training and is allowed only with model.params_from set",
            )

    def _check_quantize_beside_kmeans(self) -> None:
        """``[quantize]`` does not combine with ``[kmeans]`` (``[prune]`` first is fine: the
        quantizers hold the pruned weights at zero)."""
        if self.kmeans is not None:
            raise SectionError(
                "quantize",
                "[quantize] and [kmeans] cannot be combined (both would store codes for the "
                "same weights); remove one of them",
            )

    def _check_data_fits_model(self) -> None:
        """Token models take text datasets (token windows), the others images: the
        ``[model]`` and the ``[distill]`` student alike."""
        text = self.data.name in TEXT_DATASETS
        models = {"model.name": self.model.name}
        if self.distill is not None:
            models["distill.model"] = self.distill.model
        for key, name in models.items():
            if text != (name in TOKEN_MODELS):
                wanted = (
                    f"a model of tokens {list(TOKEN_MODELS)}"
                    if text
                    else f"an image model, not one of {list(TOKEN_MODELS)}"
                )
                raise HintedFieldError(
                    key, f"{wanted} for data.name = {self.data.name!r}", name, "or change data.name"
                )
        if not text:
            return
        if self.train.augment_shift:
            raise HintedFieldError(
                "train.augment_shift",
                "0 for text data",
                self.train.augment_shift,
                "it shifts images",
            )
        if self.distill is not None and self.distill.augment_shift:
            raise HintedFieldError(
                "distill.augment_shift",
                "0 for text data",
                self.distill.augment_shift,
                "it shifts images",
            )
