"""Tests for jaxzip/quant/_kmeans.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import (
    KMeansArray,
    centroid_grads,
    codebook_centroids,
    dequantize,
    dequantize_params,
    kmeans,
    kmeans_params,
    quantization_report,
    replace_centroids,
)


def test_kmeans_hand_worked_linear_init_and_lloyd():
    x = jnp.array([0.0, 0.1, 0.2, 0.9, 1.0])
    k0 = kmeans(x, bits=1, iters=0)  # linear init: [min, max]
    np.testing.assert_allclose(k0.centroids, [0.0, 1.0])
    k = kmeans(x, bits=1, iters=5)
    np.testing.assert_allclose(k.centroids, [0.1, 0.95], rtol=1e-6)
    np.testing.assert_array_equal(k.indices, [0, 0, 0, 1, 1])
    assert k.indices.dtype == jnp.uint8 and k.bits == 1


def test_masked_weights_decode_to_exact_zero_and_are_not_clustered():
    x = jnp.array([[5.0, 0.3], [0.0, -0.4], [0.0, 0.5]])
    mask = jnp.array([[False, True], [False, True], [False, True]])
    k = kmeans(x, bits=1, mask=mask, iters=10)
    y = np.asarray(dequantize(k))
    assert np.all(y[~np.asarray(mask)] == 0.0)
    # 5.0 was excluded: clusters {-0.4} and {0.3, 0.5}
    np.testing.assert_allclose(k.centroids, [-0.4, 0.4], rtol=1e-6)


def test_kmeans_is_jittable_and_agrees():
    x = jax.random.normal(jax.random.key(0), (32, 4))
    m = jax.random.uniform(jax.random.key(1), x.shape) > 0.3
    eager = kmeans(x, bits=3, mask=m, iters=4)
    jitted = jax.jit(lambda a, b: kmeans(a, bits=3, mask=b, iters=4))(x, m)
    np.testing.assert_allclose(eager.centroids, jitted.centroids, rtol=1e-6)
    np.testing.assert_array_equal(eager.indices, jitted.indices)


def test_more_bits_less_error():
    x = jax.random.normal(jax.random.key(2), (256,))
    errs = [float(jnp.mean((dequantize(kmeans(x, bits=b, iters=8)) - x) ** 2)) for b in (2, 4)]
    assert errs[1] < errs[0] / 4


def test_kmeans_params_and_report():
    params = {
        "Dense_0": {"kernel": jax.random.normal(jax.random.key(3), (8, 4)), "bias": jnp.ones(4)}
    }
    mask = {"Dense_0": {"kernel": jnp.arange(32).reshape(8, 4) % 2 == 0, "bias": True}}
    books = kmeans_params(params, bits=2, where=r".*/kernel", mask=mask, iters=5)
    assert isinstance(books["Dense_0"]["kernel"], KMeansArray)
    assert books["Dense_0"]["bias"] is params["Dense_0"]["bias"]
    deq = dequantize_params(books)
    assert np.all(np.asarray(deq["Dense_0"]["kernel"])[1 :: 2 * 0 + 1][:, 1::2] == 0.0)
    assert quantization_report(params, books)["Dense_0/kernel"]["bits"] == 2


def test_centroid_grads_equal_autodiff_and_segment_sums():
    x = jnp.array([0.0, 0.1, 0.9, 1.0, 0.5])
    mask = jnp.array([True, True, True, True, False])
    books = {"w": kmeans(x, bits=1, mask=mask, iters=3), "b": jnp.ones(2)}
    grads = {"w": jnp.array([1.0, 2.0, 4.0, 8.0, 100.0]), "b": jnp.array([3.0, 4.0])}
    cg = centroid_grads(books, grads)
    np.testing.assert_allclose(cg["w"], [3.0, 12.0])  # the masked 100 is excluded
    np.testing.assert_array_equal(cg["b"], grads["b"])

    def loss(trainable):
        p = dequantize_params(replace_centroids(books, trainable))
        return jnp.sum(p["w"] * grads["w"]) + jnp.sum(p["b"] * grads["b"])

    auto = jax.grad(loss)(codebook_centroids(books))
    np.testing.assert_allclose(auto["w"], cg["w"])


def test_bad_input():
    with pytest.raises(ValueError, match="bits"):
        kmeans(jnp.ones(4), bits=9)
    with pytest.raises(ValueError, match="mask"):
        kmeans(jnp.ones(4), bits=2, mask=jnp.ones(3, bool))
    with pytest.raises(TypeError, match="floating-point"):
        kmeans(jnp.ones(4, jnp.int32), bits=2)
    with pytest.raises(ValueError, match="selects no leaf"):
        kmeans_params({"w": jnp.ones(3)}, bits=2, where="kernel")
    with pytest.raises(ValueError, match=r"^w: holds 1 NaN"):
        kmeans_params({"w": jnp.array([1.0, jnp.nan])}, bits=2, where="w")


def test_kmeans_params_names_the_function_and_every_bad_leaf():
    from jaxzip._errors import NonFiniteError

    params = {"w": jnp.array([1.0, jnp.nan]), "v": jnp.array([jnp.inf, 0.0]), "b": jnp.ones(1)}
    with pytest.raises(
        NonFiniteError, match=r"^v: holds 1 .*; w: holds 1 .*; kmeans_params expects"
    ):
        kmeans_params(params, bits=2, where="w|v")
    with pytest.raises(NonFiniteError, match=r"^x: holds 1 NaN or Inf .*; kmeans expects"):
        kmeans(jnp.array([0.0, jnp.inf]), bits=1)
