"""``gptq``: GPTQ on every matmul kernel of a model, from calibration batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Unpack

import jax.numpy as jnp

from jaxzip import calib as jz_calib
from jaxzip import layout as jz_layout
from jaxzip._types import Params
from jaxzip.paths import leaves_with_paths, map_with_paths
from jaxzip.paths._trees import check_mask
from jaxzip.quant._gptq import check_obs_options, gptq_core, raise_not_pd
from jaxzip.quant._kernel import kernel_qarray, kernel_spec, run_hessian_method
from jaxzip.quant._params import Rules, resolve_rules
from jaxzip.quant._qarray import dequantize
from jaxzip.quant._spec import QuantSpec


def gptq(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    spec: QuantSpec | Rules,
    *,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
    mask: Params | None = None,
    **options: Unpack[jz_calib.OneShotOptions],
) -> Params:
    """Quantizes a model's matmul kernels with GPTQ from calibration batches.

    The kernels (every param leaf a ``dot_general`` or convolution consumes, or
    those ``where`` selects) and their input/output axes come from tracing
    ``apply_fn`` once (:func:`jaxzip.layout.trace_layouts`); each kernel is
    viewed as the ``(n_in, n_out)`` matrix of ``y = x @ W`` and quantized by
    :func:`gptq_quantize_matrix` with its Hessian ``XᵀX`` from
    :func:`jaxzip.calib.collect_stats`. With ``sequential`` (the paper's
    protocol) kernels go in traced order and each is calibrated on params
    where every earlier kernel is already quantized (dequantized values);
    kernels reading the same activation (q/k/v) share one calibration pass.
    A stack of layers (``nn.scan``) is quantized layer by layer, each on its
    own inputs, into one ``QArray`` with scales per layer.

    Granularity: ``spec.axes=(-1,)`` gives one scale per output channel (the
    :class:`QArray`'s ``axes`` are the kernel's traced ``out_axes``);
    ``group_size=g`` adds groups of ``g`` along the kernel's last input axis
    (``group_axis``; for multi-axis inputs the other input axes keep their own
    scales), so ``g`` must divide that axis; ``axes=()`` is per-tensor.
    Different kernels may take different specs (another group size where one
    does not divide, more bits for some layers): pass ordered ``(where, spec)``
    rules as in :func:`quantize_params` (the first rule matching a kernel wins;
    ``None`` keeps it float); the kernels still share the calibration passes.

    Args:
      apply_fn: ``apply_fn(params, batch)``, e.g. a linen ``model.apply``.
      params: the float params (as ``apply_fn`` takes them).
      batches: calibration inputs, each passed as ``apply_fn(params, batch)`` (a
        pytree batch is one argument); read once per calibration pass.
      spec: bits 2..8, grid, ``axes`` ``()`` or ``(-1,)``, optional ``group_size``;
        or ordered ``(where, spec_or_None)`` rules giving each kernel its own.
      where: the kernels to quantize (default: every traced kernel).
      sequential: calibrate each group on the already-quantized earlier kernels.
      damp: relative Hessian dampening.
      block_size: rows per lazy-update block.
      act_order: quantize inputs by descending ``diag H`` (static groups).
      layouts: the ``{path: KernelLayout}`` of ``trace_layouts``, if already traced.
      progress: a progress bar over the kernels on stderr.
      mask: a keep-mask tree with ``params``' structure (a pruned model's, e.g. from
        :mod:`jaxzip.prune`): each quantized kernel holds exactly its zeros, the pruned
        weights set to zero as GPTQ reaches them and their error spread over the rows not
        yet quantized (:func:`gptq_quantize_matrix` with ``keep``). Pruning first and
        quantizing with the mask keeps the model sparse; GPTQ without it refills zeros.

    Returns:
      ``params``' structure with a :class:`QArray` (kernel shape) at each
      selected kernel; other leaves unchanged.

    Raises:
      ValueError: fewer calibration tokens than a kernel's ``n_in`` (the
        message names the kernel, the count and ``n_in``); a group size not
        dividing a kernel's last input axis (the sizes that do are listed); a
        Hessian not positive definite after the dampening retries; ``where``
        selecting nothing or a leaf no matmul consumes; bad spec or options.
      TypeError: bad argument types.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> import jaxzip as jz
      >>> model = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(4)])
      >>> params = model.init(jax.random.key(0), jnp.ones((1, 8)))
      >>> batches = [jax.random.normal(jax.random.key(i), (32, 8)) for i in range(2)]
      >>> q = gptq(model.apply, params, batches, jz.quant.QuantSpec(bits=4, axes=(-1,)))
      >>> type(q["params"]["layers_2"]["kernel"]).__name__, q["params"]["layers_2"]["kernel"].axes
      ('QArray', (1,))
    """
    what = "gptq"
    check_obs_options(damp, block_size, what)
    if mask is not None:
        check_mask(params, mask, f"{what}: mask")
    keeps = {} if mask is None else dict(leaves_with_paths(mask))
    if not isinstance(act_order, bool):
        raise TypeError(f"{what}: act_order must be a bool, got {act_order!r}")
    if isinstance(spec, QuantSpec):
        specs = {None: spec}
    else:
        specs = {p: s for p, s in resolve_rules(params, spec) if s is not None}
    mspecs = {k: kernel_spec(s, what if k is None else f"{what}: {k}") for k, s in specs.items()}

    def select(paths: list[str], layouts: Mapping[str, Any]) -> list[str]:
        if None not in specs:
            outside = sorted(set(specs) - set(layouts))
            if outside:
                raise ValueError(
                    f"{what}: the rules give a spec to {outside[:4]}, which no matmul or conv "
                    "of apply_fn consumes; GPTQ quantizes kernels only"
                )
            paths = [p for p in paths if p in specs]
            if not paths:
                raise ValueError(f"{what}: no selected kernel gets a spec from the rules")
        for p in paths:
            g = specs.get(p, specs.get(None)).group_size
            if g is not None:
                layouts[p].check_group(g, "group_size", p)
        return paths

    def process(path: str, leaf: Any, layout: Any, stats: Any, layer: Any = ()) -> tuple[Any, Any]:
        m = jz_layout.to_matrix(leaf, layout).astype(jnp.float32)
        mspec = mspecs.get(path, mspecs.get(None))
        keep = keeps.get(path)
        if keep is not None:
            keep = jz_layout.to_matrix(jnp.asarray(keep)[layer], layout)
        q, ok, lam = gptq_core(
            m, stats.xtx, damp, spec=mspec, block_size=block_size, act_order=act_order, keep=keep
        )
        raise_not_pd(ok, lam, path)
        kq = kernel_qarray(q, layout, dtype=jnp.result_type(leaf))
        return dequantize(kq), kq

    out = run_hessian_method(
        apply_fn, params, batches, process, select=select, name=what, **options
    )
    return map_with_paths(lambda p, x: out.get(p, x), params)
