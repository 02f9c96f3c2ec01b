"""SparseGPT (Frantar & Alistarh 2023) on one matrix ``W (n_in, n_out)`` with ``H = XᵀX``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Unpack

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip import calib as jz_calib
from jaxzip import layout as jz_layout
from jaxzip._types import Mask, Params
from jaxzip.paths import map_with_paths
from jaxzip.prune._checks import check_sparsity, is_concrete
from jaxzip.prune._structures import NByM
from jaxzip.quant import (
    QArray,
    QuantSpec,
    check_obs_options,
    kernel_qarray,
    kernel_spec,
    obs_prune,
)
from jaxzip.quant._kernel import run_hessian_method


def check_prune_options(sparsity: Any, structure: Any, what: str, n_in: int | None = None) -> Any:
    """Exactly one of ``sparsity`` (in [0, 1)) and ``structure`` (an :class:`NByM` on the inputs).

    Returns the sparsity for unstructured pruning, None for N:M.
    """
    if structure is None:
        if sparsity is None:
            raise ValueError(f"{what}: pass sparsity=... (unstructured) or structure=NByM(n, m)")
        check_sparsity(sparsity, f"{what}: sparsity")
        return sparsity
    if not isinstance(structure, NByM):
        raise TypeError(f"{what}: structure must be NByM(n, m) or None, got {structure!r}")
    if (
        sparsity is not None
        and is_concrete(sparsity)
        and abs(float(sparsity) - structure.sparsity) > 1e-6
    ):
        raise ValueError(
            f"{what}: {structure!r} prunes exactly {structure.sparsity:g}; got "
            f"sparsity={sparsity!r} (pass sparsity=None)"
        )
    if structure.axis not in (0, -2):
        raise ValueError(
            f"{what}: N:M groups run along the input axis (axis=-2 of (n_in, n_out)), "
            f"got axis={structure.axis}"
        )
    if n_in is not None and n_in % structure.m:
        raise ValueError(
            f"{what}: NByM m={structure.m} must divide the input size {n_in} (N:M groups run "
            "along the input axis)"
        )
    return None


def sparsegpt_prune_matrix(
    w: ArrayLike,
    h: ArrayLike,
    *,
    sparsity: float | None = None,
    structure: NByM | None = None,
    damp: float = 0.01,
    block_size: int = 128,
    quant_spec: QuantSpec | None = None,
) -> tuple[jax.Array, jax.Array] | tuple[jax.Array, jax.Array, QArray]:
    """Prunes ``W (n_in, n_out)`` with SparseGPT, reconstructing ``XW`` for ``H = XᵀX``.

    Input rows are visited in order in blocks of ``block_size``; the weights
    removed are chosen *adaptively* by the OBS saliency ``w² / [H⁻¹]ᵢᵢ²`` of the
    error-updated weights, and each row's error (pruning, and rounding when
    joint with quantization) is compensated on the later rows through the upper
    Cholesky factor of ``(H + λI)⁻¹``, ``λ = damp · mean(diag H)`` (retried 10x
    larger, up to 3 times, if not positive definite).

    Mask selection, as in the paper's Algorithm 1 and the reference code:
    unstructured, one selection per block over the block's ``block_size x n_out``
    weights (all output columns together), pruning exactly
    ``round(sparsity · size)`` of them (ties: the lower row-major index); N:M,
    for every ``m`` consecutive input rows, each output column keeps its ``n``
    most salient, chosen when the loop reaches the group.

    Joint quantization (``quant_spec``): every kept weight is rounded onto the
    grid as in GPTQ (per-tensor/channel scales from ``W`` before any update,
    per-group scales when the loop reaches the group); pruned weights are exact
    zeros of the grid.

    Args:
      w: float weights, rows = inputs (``x @ w``).
      h: ``(n_in, n_in)`` Hessian ``XᵀX``.
      sparsity: fraction pruned, in ``[0, 1)`` (unstructured).
      structure: ``NByM(n, m)`` along the input axis (``axis=-2``) instead.
      damp: relative dampening (> 0).
      block_size: rows per block (rounded to a multiple of ``m`` and of the group size).
      quant_spec: optional :class:`QuantSpec` for joint pruning and quantization.

    Returns:
      ``(w_pruned, mask)`` (mask False where pruned), and the :class:`QArray`
      third when ``quant_spec`` is given (``w_pruned`` is then its dequantized value).

    Raises:
      ValueError: sparsity outside ``[0, 1)``, neither or a mismatched
        sparsity/structure, ``m`` not dividing ``n_in``, bad shapes or options,
        or a Hessian not positive definite after the retries.
      TypeError: bad ``structure``/``quant_spec`` types or non-float arrays.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.prune import NByM
      >>> x = jnp.array([[1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 1.0, 3.0], [1.0, 1.0, 0.0, 1.0]])
      >>> w = jnp.array([[0.1], [2.0], [-1.0], [0.3]])
      >>> _, mask = sparsegpt_prune_matrix(w, x.T @ x, structure=NByM(1, 2))
      >>> mask[:, 0]
      Array([False,  True,  True, False], dtype=bool)
    """
    what = "sparsegpt_prune_matrix"
    s = check_prune_options(sparsity, structure, what)
    n, m = (structure.n, structure.m) if structure is not None else (0, 0)
    w_hat, mask, q = obs_prune(
        w,
        h,
        sparsity=0.0 if s is None else s,
        n=n,
        m=m,
        spec=quant_spec,
        damp=damp,
        block_size=block_size,
        name=what,
    )
    return (w_hat, mask) if q is None else (w_hat, mask, q)


def check_tree_structure(
    structure: Any, paths: list[str], layouts: Mapping[str, Any], what: str
) -> list[str]:
    """N:M groups run along each kernel's last input axis: ``m`` must divide it."""
    if structure is None:
        return paths
    if structure.axis != -2:
        raise ValueError(
            f"{what}: leave NByM's axis at -2; N:M groups run along each kernel's traced "
            f"input axis (layout.group_axis()), got axis={structure.axis}"
        )
    for p in paths:
        layouts[p].check_group(structure.m, "NByM m", p)
    return paths


def sparsegpt(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    *,
    sparsity: float | None = None,
    structure: NByM | None = None,
    damp: float = 0.01,
    block_size: int = 128,
    quant_spec: QuantSpec | None = None,
    **options: Unpack[jz_calib.OneShotOptions],
) -> tuple[Params, Mask]:
    """Prunes a model's matmul kernels with SparseGPT from calibration batches.

    Kernels and their input axes come from tracing ``apply_fn``
    (:func:`jaxzip.layout.trace_layouts`); each kernel, as the ``(n_in, n_out)``
    matrix of ``y = x @ W``, goes through :func:`sparsegpt_prune_matrix` with its
    Hessian from :func:`jaxzip.calib.collect_stats`. With ``sequential`` (the
    paper's protocol) each kernel is calibrated on params where every earlier
    kernel is already pruned; kernels reading the same activation share a pass.
    A stack of layers (``nn.scan``) is pruned layer by layer, each on its own inputs.
    N:M groups run along each kernel's last input axis (the true input axis:
    input features of a Dense, input channels of an HWIO conv).

    Args:
      apply_fn: ``apply_fn(params, batch)``.
      params: the float params.
      batches: calibration inputs, each passed as ``apply_fn(params, batch)``.
      sparsity: fraction pruned (unstructured), in ``[0, 1)``.
      structure: ``NByM(n, m)`` instead (``axis`` left at -2).
      where: the kernels to prune (default: every traced kernel).
      sequential: calibrate on the already-pruned earlier kernels.
      damp: relative Hessian dampening.
      block_size: rows per block.
      quant_spec: joint quantization (as :func:`jaxzip.quant.gptq`'s ``spec``).
      layouts: the ``{path: KernelLayout}`` of ``trace_layouts``, if already traced.
      progress: a progress bar over the kernels on stderr.

    Returns:
      ``(params, mask)``: the pruned and reconstructed params (a :class:`QArray`
      per kernel with ``quant_spec``), and a bool mask with ``params``'
      structure (all True on leaves not pruned) for :func:`apply_mask` and
      :func:`keep_masked`.

    Raises:
      ValueError: fewer calibration tokens than a kernel's ``n_in``; ``m`` not
        dividing a kernel's input axis; bad sparsity; a Hessian not positive
        definite after the retries; ``where`` selecting nothing or a non-kernel.
      TypeError: bad argument types.

    Example:
      A plain-pytree model (any ``apply_fn`` whose kernels feed matmuls works,
      Flax or not); 2:4 along each kernel's input axis:

      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.prune import NByM
      >>> params = {"w1": jax.random.normal(jax.random.key(0), (8, 16)), "w2": jnp.ones((16, 4))}
      >>> apply_fn = lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"]
      >>> batches = [jax.random.normal(jax.random.key(i), (32, 8)) for i in (1, 2)]
      >>> p, mask = sparsegpt(apply_fn, params, batches, structure=NByM(2, 4))
      >>> mask["w1"].reshape(2, 4, 16).sum(1).min().item(), mask["w2"].shape
      (2, (16, 4))
    """
    what = "sparsegpt"
    check_prune_options(sparsity, structure, what)
    check_obs_options(damp, block_size, what)
    mspec = None if quant_spec is None else kernel_spec(quant_spec, f"{what}: quant_spec")
    n, m = (structure.n, structure.m) if structure is not None else (0, 0)

    def select(paths: list[str], layouts: Mapping[str, Any]) -> list[str]:
        for p in paths:
            if mspec is not None and mspec.group_size is not None:
                layouts[p].check_group(mspec.group_size, "group_size", p)
        return check_tree_structure(structure, paths, layouts, what)

    def process(path: str, leaf: Any, layout: Any, stats: Any, layer: Any = ()) -> tuple[Any, Any]:
        mat = jz_layout.to_matrix(leaf, layout).astype(jnp.float32)
        s = 0.0 if sparsity is None else sparsity
        w_hat, mask, q = obs_prune(
            mat,
            stats.xtx,
            sparsity=s,
            n=n,
            m=m,
            spec=mspec,
            damp=damp,
            block_size=block_size,
            name=path,
        )
        new = jz_layout.from_matrix(w_hat, layout).astype(jnp.result_type(leaf))
        kq = new if q is None else kernel_qarray(q, layout, dtype=jnp.result_type(leaf))
        return new, (kq, jz_layout.from_matrix(mask, layout))

    out = run_hessian_method(
        apply_fn, params, batches, process, select=select, name=what, **options
    )
    pruned = map_with_paths(lambda p, x: out[p][0] if p in out else x, params)
    return pruned, full_mask(params, {p: mask for p, (_, mask) in out.items()})


def full_mask(params: Params, masks: Mapping[str, Any]) -> Mask:
    """A bool tree with ``params``' structure: ``masks`` at their paths, all True elsewhere."""
    return map_with_paths(lambda p, x: masks.get(p, jnp.ones(jnp.shape(x), bool)), params)
