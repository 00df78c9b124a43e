"""The BN-only NTK limit against closed forms and against finite-width nets, with explicit tolerances.

Where the finite-width expectation is *exact* (depth 1: the only fixed weights
feeding a BN are the first layer's, independent of the readout; linear nets
with population statistics: the backward signal never touches the forward
weights), the mean of many empirical kernels must match the closed form to
within a few standard errors entrywise -- and must reject Eq. 4.  Elsewhere
the error must fall with width like width^-1/2.
"""
import jax
import numpy as np
import pytest

from theory import x64


def _lam():
    return np.array([[1.0, 0.5, -0.2], [0.5, 1.3, 0.1], [-0.2, 0.1, 0.8]])


def _arccos_kernels(lam):
    """Unit-free arc-cosine kernels of degree 1 and 0, written out by hand (Cho & Saul 2009)."""
    d = np.sqrt(np.diag(lam))
    c = np.clip(lam / np.outer(d, d), -1, 1)
    th = np.arccos(c)
    return np.outer(d, d) * (np.sin(th) + (np.pi - th) * c) / (2 * np.pi), (np.pi - th) / (2 * np.pi)


def _empirical_kernels(x, *, depth, act, stats, sigma_w, sigma_b, width, seeds, affine="unit", pop_scales=None):
    """BN-only NTKs of ``seeds`` independent nets, shape (seeds, m, m)."""
    from theory import empirical, network

    ks = []
    for s in range(seeds):
        fixed, unit, gauss = jax.device_put(network.sample_weights(s, x.shape[1], width, depth))
        ks.append(empirical.bn_only_ntk(x, unit if affine == "unit" else gauss, fixed, phi=act.phi, sigma_w=sigma_w,
                                        sigma_b=sigma_b, stats=stats, pop_scales=pop_scales))
    return np.asarray(ks)


def _t2(ks, ref, scale=False):
    """Hotelling's T^2 / k of the seed mean against ``ref`` (k = upper-triangle entries), c = 1 or best scale.

    The entries of one kernel are strongly correlated (a channel moves all of
    them), so the test uses their covariance across seeds: if ``ref`` is the
    expectation, T^2/k is about 1 (F(k, S - k) distributed; P(> 2.5) < 1e-4 for
    k = 21, S = 300); a reference off by a few standard errors gives tens.
    """
    iu = np.triu_indices(ks.shape[1])
    v = ks[:, iu[0], iu[1]]
    r = ref[iu]
    c = float(v.mean(0) @ r / (r @ r)) if scale else 1.0
    d = v.mean(0) - c * r
    return float(len(v) * d @ np.linalg.solve(np.cov(v, rowvar=False), d) / len(d))


def _assert_matches(ks, ref):
    assert _t2(ks, ref) < 2.5, _t2(ks, ref)


def _assert_rejects(ks, ref, at_least=25.0):
    """Even after the best scale, ``ref`` is off by many standard errors (T^2/k = 10: P < 1e-20 under F(21, 279))."""
    assert _t2(ks, ref, scale=True) > at_least, _t2(ks, ref, scale=True)


# ---------------------------------------------------------------------------------------------- duals
def test_closed_form_duals_match_stax_hand_formulas_and_quadrature():
    from theory.activations import ERF, RELU
    from theory.duals import duals, quadrature_duals
    from theory.gaussian import dual_kernels

    lam = _lam()
    with x64():
        for act in (RELU, ERF):
            sig, sigd, a = duals(lam, act)
            ssig, ssigd = dual_kernels(lam, act)  # neural-tangents' stax closed forms
            np.testing.assert_allclose(sig, ssig, atol=1e-10)
            np.testing.assert_allclose(sigd, ssigd, atol=1e-8)
            if act is ERF:  # smooth: quadrature converges fast (not at ReLU's kink, hence A = Sigma there)
                qsig, qsigd, qa = quadrature_duals(lam, act, 64)
                np.testing.assert_allclose((sig, sigd, a), (qsig, qsigd, qa), atol=1e-8)
            else:
                np.testing.assert_array_equal(a, sig)
    s1, s0 = _arccos_kernels(lam)
    np.testing.assert_allclose(duals(lam, RELU)[0], s1, atol=1e-12)
    np.testing.assert_allclose(duals(lam, RELU)[1], s0, atol=1e-12)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_stax_duals_match_monte_carlo(name):
    from theory.activations import get_activation
    from theory.gaussian import dual_kernels, monte_carlo_pairwise

    act = get_activation(name)
    with x64():
        sig, sigd = dual_kernels(_lam(), act)
        mc, se = monte_carlo_pairwise(jax.random.PRNGKey(0), _lam(), act.phi, act.phi, 200_000)
        mcd, sed = monte_carlo_pairwise(jax.random.PRNGKey(1), _lam(), act.dphi, act.dphi, 200_000)
    assert np.all(np.abs(sig - mc) < 5 * se + 1e-12)
    assert np.all(np.abs(sigd - mcd) < 5 * sed + 1e-12)


# ---------------------------------------------------------------------------------------------- the theorem
def test_population_closed_form_matches_the_stated_recursion_and_the_backward_form():
    """DERIVATION.md's ReLU closed form, written out by hand at depth 2, equals both implementations."""
    from theory import limits, network
    from theory.activations import get_activation
    from theory.kernel_limit import LimitSpec, ntk_limit

    sw, sb = 1.3, 0.4
    with x64():
        x = np.asarray(network.make_inputs(jax.random.PRNGKey(3), 5, 4))
        for name in ("relu", "erf", "linear"):
            act = get_activation(name)
            for depth in (1, 2, 4):
                fwd = limits.derived_population_kernel(x, depth, act, sw, sb)
                bwd = ntk_limit(None, x, LimitSpec(act, depth, sw, sb, "population")).theta
                np.testing.assert_allclose(fwd, bwd, rtol=1e-12, atol=1e-12)
        # by hand: Theta = sw^2 [ (sw^2/s2^2) Sdot2 * (S1 + Sdot1) + S2 + Sdot2 ], s1^2 = sw^2 + sb^2
        k0 = sw**2 * x @ x.T / x.shape[1] + sb**2
        s1, s0 = _arccos_kernels(k0 / (sw**2 + sb**2))
        k1 = sw**2 * s1 + sb**2
        s2sq = sw**2 / 2 + sb**2
        t1, t0 = _arccos_kernels(k1 / s2sq)
        want = sw**2 * (sw**2 / s2sq * t0 * (s1 + s0) + t1 + t0)
        np.testing.assert_allclose(limits.derived_population_kernel(x, 2, get_activation("relu"), sw, sb), want,
                                   rtol=1e-12)
        # and the paper's Eq. 4 as printed (Theta^1 = Sigma^1, Theta^2 = sw^2 Sigma^2 * Theta^1 + Sigma^2), which
        # the rejection tests below use: Sigma^2 where the theorem has (sw^2/s2^2) Sigma_dot^2, and no beta term
        np.testing.assert_allclose(limits.eq4_kernel(x, 2, get_activation("relu"), sw, sb), sw**2 * t1 * s1 + t1,
                                   rtol=1e-12)


def test_batch_limit_moment_formulation_equals_the_four_index_contraction():
    """The O(N^2)-per-draw backward pass equals E[(phi' J)(phi' J)] contracted as a 4-index tensor, same draws."""
    from theory import network
    from theory.activations import RELU
    from theory.kernel_limit import LimitSpec, _psd_root, _sample_layer, input_kernel, ntk_limit

    key, m, chunk, n_chunks = jax.random.PRNGKey(5), 5, 1000, 3
    for affine in ("gaussian",):  # random gamma, beta: the general case (gamma = 1, beta = 0 is a special one)
        spec = LimitSpec(RELU, 3, 1.2, 0.3, "batch", affine)
        with x64():
            x = np.asarray(network.make_inputs(jax.random.PRNGKey(4), m, 3))
            got = ntk_limit(key, x, spec, n_samples=chunk * n_chunks, n_rep=1, chunk=chunk).theta
            keys = jax.random.split(jax.random.split(key, 1)[0], spec.depth)
            k, draws = input_kernel(x, 1.2, 0.3), []
            for l in range(spec.depth):
                root = np.asarray(_psd_root(k))
                d = [_sample_layer(s, root, 0.0, spec, chunk) for s in jax.random.split(keys[l], n_chunks)]
                u, y, dd, s = (np.concatenate([np.asarray(t[i]) for t in d]) for i in range(4))
                draws.append((u, y, dd, s))
                k = 1.2**2 * np.mean(np.maximum(y, 0)[:, :, None] * np.maximum(y, 0)[:, None, :], 0) + 0.3**2
        eye = np.eye(m)
        pi = np.einsum("ab,cd->abcd", eye, eye)  # Pi[a, b, a', b']
        want = np.zeros((m, m))
        for l in reversed(range(spec.depth)):
            u, y, dd, s = draws[l]
            dp = (y > 0) * 1.0
            a_l = np.einsum("ni,nj->ij", dp * u, dp * u) / len(u)
            b_l = np.einsum("ni,nj->ij", dp, dp) / len(u)
            want += 1.2**2 * np.einsum("abcd,bd->ac", pi, a_l + b_l)
            jac = (eye[None] - 1.0 / m - u[:, :, None] * u[:, None, :] / m) / s[:, :, None]  # J[e, b]
            q = (dd[:, :, None] * jac).reshape(len(u), m * m)
            mm = (q.T @ q / len(u)).reshape(m, m, m, m)
            pi = 1.2**2 * np.einsum("aecf,ebfd->abcd", pi, mm)
        np.testing.assert_allclose(got, want, rtol=1e-9)


# ---------------------------------------------------------------------------------------------- exact expectations
def test_depth1_relu_population_kernel_is_the_arc_cosine_closed_form_at_any_width():
    """E[Theta_emp] = sigma_w^2 (Sigma^1 + Sigma_dot^1) exactly at width 64; Eq. 4 (Sigma^1) is rejected."""
    from theory import limits, network
    from theory.activations import RELU

    sw, sb = 1.1, 0.3
    with x64():
        x = network.make_inputs(jax.random.PRNGKey(0), 6, 5)
        s1 = np.sqrt(sw**2 + sb**2)
        ks = _empirical_kernels(x, depth=1, act=RELU, stats="population", sigma_w=sw, sigma_b=sb, width=256,
                                seeds=300, pop_scales=[s1])
        eq4 = limits.eq4_kernel(x, 1, RELU, sw, sb)
    s1k, s0k = _arccos_kernels(limits.input_kernel(np.asarray(x), sw, sb) / s1**2)
    _assert_matches(ks, sw**2 * (s1k + s0k))
    _assert_rejects(ks, eq4)  # Eq. 4 misses the beta term Sigma_dot: wrong even in shape


def test_linear_population_kernel_is_exact_at_finite_width_depth3():
    """Linear phi, population BN: E[Theta_emp] = sigma_w^2 U^3 exactly at width 16 (no gradient-independence step)."""
    from theory import limits, network
    from theory.activations import LINEAR

    sw, sb = 1.3, 0.4
    with x64():
        x = network.make_inputs(jax.random.PRNGKey(1), 5, 4)
        scales = limits.population_scales(np.asarray(x), 3, LINEAR, sw, sb)
        ks = _empirical_kernels(x, depth=3, act=LINEAR, stats="population", sigma_w=sw, sigma_b=sb, width=16,
                                seeds=400, pop_scales=scales)
        theorem = limits.derived_population_kernel(np.asarray(x), 3, LINEAR, sw, sb)
        eq4 = limits.eq4_kernel(np.asarray(x), 3, LINEAR, sw, sb)
    _assert_matches(ks, theorem)
    _assert_rejects(ks, eq4)


@pytest.mark.parametrize("stats,affine", [("batch", "unit"), ("population", "gaussian")])
def test_depth1_monte_carlo_limits_are_exact_expectations(stats, affine):
    """Depth 1 with batch statistics, or with gamma, beta ~ N(0, 1): the MC limit is E[Theta_emp] at width 256."""
    from theory import network
    from theory.activations import RELU
    from theory.kernel_limit import LimitSpec, ntk_limit

    sw, sb = 1.2, 0.2
    with x64():
        x = network.make_inputs(jax.random.PRNGKey(2), 6, 5)
        lim = ntk_limit(jax.random.PRNGKey(9), np.asarray(x), LimitSpec(RELU, 1, sw, sb, stats, affine),
                        n_samples=2_000_000, n_rep=2)
        ks = _empirical_kernels(x, depth=1, act=RELU, stats=stats, sigma_w=sw, sigma_b=sb, width=256, seeds=300,
                                affine=affine, pop_scales=lim.scales or None)
    assert lim.rel_stderr < 2e-3  # the limit's MC error is well below the empirical one (~7e-3 per entry)
    _assert_matches(ks, lim.theta)
    # the test has the power to tell the nearest wrong kernels apart: the other BN statistics, and (for random
    # gamma, beta) unit gamma.  (At depth 1 no gradient passes through a BN, so frozen batch statistics give
    # the same kernel as batch statistics: that is not a wrong kernel here.)
    wrong = [LimitSpec(RELU, 1, sw, sb, "population" if stats == "batch" else "batch", affine)]
    if affine == "gaussian":
        wrong.append(LimitSpec(RELU, 1, sw, sb, stats, "unit"))
    with x64():
        for spec in wrong:
            _assert_rejects(ks, ntk_limit(jax.random.PRNGKey(10), np.asarray(x), spec, n_samples=200_000,
                                          n_rep=2).theta, at_least=10.0)  # unit gamma: T^2/k = 23


# ---------------------------------------------------------------------------------------------- convergence
def test_cnn_limit_reduces_to_the_fcn_limit_for_one_pixel_and_1x1_kernels():
    from theory import cnn, network
    from theory.activations import ERF
    from theory.kernel_limit import LimitSpec, ntk_limit

    with x64():
        x = np.asarray(network.make_inputs(jax.random.PRNGKey(0), 5, 3))
        spec = LimitSpec(ERF, 3, 1.2, 0.3, "population")
        np.testing.assert_allclose(cnn.limit(None, x.reshape(5, 1, 1, 3), spec, k=1).theta,
                                   ntk_limit(None, x, spec).theta, rtol=1e-12)


def test_cnn_depth1_population_kernel_matches_the_cnn_limit_in_expectation():
    """Circular 3x3 conv -> BN -> ReLU -> GAP: exact expectation at 128 channels (checks conv_mix vs the real conv)."""
    from theory import cnn
    from theory.activations import RELU
    from theory.kernel_limit import LimitSpec

    with x64():
        imgs = cnn.make_images(1, 3, 4, 3)
        lim = cnn.limit(None, imgs, LimitSpec(RELU, 1, 1.0, 0.2, "population"))
        ks = []
        for s in range(200):
            fixed, bn = jax.device_put(cnn.sample_weights(s, 3, 128, 1))
            ks.append(cnn.bn_only_ntk(jax.numpy.asarray(imgs), bn, fixed, phi=RELU.phi, sigma_w=1.0, sigma_b=0.2,
                                      stats="population", pop_scales=lim.scales))
    _assert_matches(np.asarray(ks), lim.theta)
    # and rejects the kernel of a 1x1 convolution (no mixing of neighbouring pixels), a near miss
    with x64():
        _assert_rejects(np.asarray(ks), cnn.limit(None, imgs, LimitSpec(RELU, 1, 1.0, 0.2, "population"), k=1).theta)
