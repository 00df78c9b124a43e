"""VAdam (hand-computed steps, Adam limit), DARTS/BaLeNAS steps, search resume, ``fbnas search --algo``."""
from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fbnas_jax.training.vadam import VAdam

# --------------------------------------------------------------------------- VAdam


def test_vadam_two_steps_by_hand():
    # N = 10, delta = 2 -> delta~ = 0.2; s0 = 0 (init_precision = delta); b1 = 0.5, b2 = 0.9, lr = 0.1
    v = VAdam(0.1, 10, prior_precision=2.0, b1=0.5, b2=0.9)
    mu = jnp.array([1.0])
    state = v.init(mu)
    assert np.allclose(v.std(state), 1 / math.sqrt(10 * (0 + 0.2)))  # = 1/sqrt(delta): the prior's spread
    # step 1, g = 3: m = 0.5*(3 + 0.2*1) = 1.6; s = 0.1*9 = 0.9; m^ = 1.6/0.5 = 3.2; s^ = 0.9/0.1 = 9
    upd, state = v.update(jnp.array([3.0]), state, mu)
    assert np.allclose(upd, -0.1 * 3.2 / (3.0 + 0.2), rtol=1e-6)  # = -0.1
    mu = mu + upd
    assert np.allclose(v.std(state), 1 / math.sqrt(10 * (0.9 + 0.2)), rtol=1e-6)
    # step 2, g = -1 at mu = 0.9: m = 0.8 + 0.5*(-1 + 0.18) = 0.39; s = 0.81 + 0.1 = 0.91
    upd, state = v.update(jnp.array([-1.0]), state, mu)
    m_hat, s_hat = 0.39 / (1 - 0.25), 0.91 / (1 - 0.81)
    assert np.allclose(upd, -0.1 * m_hat / (math.sqrt(s_hat) + 0.2), rtol=1e-5)
    assert int(state.count) == 2


def test_vadam_samples_have_the_posterior_spread():
    v = VAdam(0.1, 10, prior_precision=2.0, init_precision=8.0)
    mu = jnp.array([[1.0, -2.0]])
    state = v.init(mu)
    draws = np.asarray(v.sample(jax.random.key(0), mu, state, num=20000))
    assert draws.shape == (20000, 1, 2)
    assert np.allclose(draws.mean(0), mu, atol=0.02)
    assert np.allclose(draws.std(0), 1 / math.sqrt(8.0), rtol=0.03)  # sigma_0 = 1/sqrt(init_precision)


def test_vadam_with_vanishing_sigma_is_adam_on_mu():
    # toy quadratic l(a) = 0.5 * sum(h * (a - c)^2); gradient taken at the VAdam samples
    h, c = jnp.array([1.0, 4.0, 0.5]), jnp.array([2.0, -1.0, 0.3])
    grad = jax.grad(lambda a: 0.5 * jnp.sum(h * (a - c) ** 2))
    # sigma^2 = 1/(N s + delta) <= 1e-8 and delta~ = delta / N = 1e-8: sigma -> 0, prior -> 0
    v = VAdam(0.05, 10 ** 16, prior_precision=1e8, b1=0.5, b2=0.999)
    adam = optax.adam(0.05, b1=0.5, b2=0.999, eps=0.0)
    mu = ref = jnp.zeros(3)
    vs, as_ = v.init(mu), adam.init(ref)
    for t in range(20):
        assert float(jnp.max(v.std(vs))) <= 1e-4
        alpha = v.sample(jax.random.key(t), mu, vs)[0]
        u, vs = v.update(grad(alpha), vs, mu)
        mu = mu + u
        u, as_ = adam.update(grad(ref), as_, ref)
        ref = ref + u
    assert np.allclose(mu, ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ref, 0.0)


def test_vadam_rejects_bad_settings():
    with pytest.raises(ValueError, match="prior_precision"):
        VAdam(0.1, 10, prior_precision=0.0)
    with pytest.raises(ValueError, match="dataset_size"):
        VAdam(0.1, 0)
    with pytest.raises(ValueError, match="needs the parameters"):
        v = VAdam(0.1, 10)
        v.update(jnp.ones(2), v.init(jnp.ones(2)))


# --------------------------------------------------------------------------- steps

TINY = ["model.channels=4", "model.cells_per_stage=1", "model.bn_mode=bnnas", "train.params=all",
        "train.batch_size=32", "train.epochs=2", "train.learning_rate=0.05", "train.log_every=1",
        "train.checkpoint_every=3"]


@pytest.fixture(scope="module")
def tiny_steps(tiny_dataset):
    """Compiled DARTS weight / arch steps of a C=4, N=1 supernet on 16x16 images, and a batch pair."""
    from fbnas_jax import data as fdata
    from fbnas_jax.search import darts
    from fbnas_jax.search.differentiable import load_search_config
    from fbnas_jax.training import steps
    from fbnas_jax.training.loop import network_from_config, optimizer_from_config

    cfg, acfg = load_search_config(None, TINY + ["search.algo=darts", "search.arch_learning_rate=0.05"])
    net = network_from_config(cfg, tiny_dataset.num_classes)
    tx = optimizer_from_config(cfg, 100)
    st, labels = steps.init_state(net, 0, tiny_dataset.image_shape, tx, param_mode="all")
    arch_opt = darts.arch_optimizer(acfg, 128)
    alpha = darts.init_arch(jax.random.key(1), (6, 5), 1e-3)
    state = darts.SearchState(st.step, st.params, st.batch_stats, st.opt_state, alpha, arch_opt.init(alpha))
    batches = list(fdata.train_batches(tiny_dataset, 32, seed=0, epoch=0, augment=False))[:2]
    return dict(net=net, state=state, labels=labels, tx=tx, arch_opt=arch_opt, acfg=acfg, batches=batches,
                weight_step=darts.make_weight_step(net, tx, labels),
                arch_step=darts.make_arch_step(net, arch_opt, algo="darts", seed=0))


def _loss(net, state, batch, alpha):
    from fbnas_jax.search.darts import _loss as loss

    return float(loss(net, state.params, state.batch_stats, batch, jax.nn.softmax(alpha, -1))[0])


def test_darts_weight_step_decreases_the_loss(tiny_steps):
    t = tiny_steps
    state, batch = t["state"], t["batches"][0]
    before = _loss(t["net"], state, batch, state.arch)
    for _ in range(5):
        state, m = t["weight_step"](state, batch)
        assert bool(m["finite"])
    assert int(state.step) == 5
    assert np.array_equal(state.arch, t["state"].arch)  # the weight step leaves alpha alone
    assert _loss(t["net"], state, batch, state.arch) < before


def test_darts_arch_step_has_gradients_and_decreases_the_arch_loss(tiny_steps):
    t = tiny_steps
    state, (wb, ab) = t["state"], t["batches"]
    before = _loss(t["net"], state, ab, state.arch)
    state, m = t["arch_step"](state, wb, ab)
    assert float(m["arch_grad_norm"]) > 0
    assert not np.array_equal(state.arch, t["state"].arch)
    for _ in range(4):
        state, m = t["arch_step"](state, wb, ab)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), state.params, t["state"].params))
    assert _loss(t["net"], state, ab, state.arch) < before


def test_second_order_gradient_differs_from_first_order(tiny_steps):
    from fbnas_jax.search.darts import make_arch_grad

    t = tiny_steps
    s, (wb, ab) = t["state"], t["batches"]
    first = make_arch_grad(t["net"])
    second = make_arch_grad(t["net"], second_order=True, xi=0.05)
    _, g1 = jax.jit(first)(s.params, s.batch_stats, s.arch, wb, ab, s.step)
    _, g2 = jax.jit(second)(s.params, s.batch_stats, s.arch, wb, ab, s.step)
    assert np.all(np.isfinite(g2)) and float(jnp.abs(g1).sum()) > 0
    assert not np.allclose(g1, g2)


def test_balenas_search_resumes_bit_identically(tiny_dataset, tmp_path):
    from fbnas_jax.search.differentiable import load_search_config, search

    cfg, acfg = load_search_config(None, TINY + ["search.algo=balenas"])
    full = search(cfg, acfg, tmp_path / "a", dataset=tiny_dataset, progress=False, log=lambda m: None)
    search(cfg, acfg, tmp_path / "b", dataset=tiny_dataset, progress=False, stop_after=3, log=lambda m: None)
    msgs = []
    resumed = search(cfg, acfg, tmp_path / "b", dataset=tiny_dataset, progress=False, log=msgs.append)
    assert any("resumed from step 3" in m for m in msgs)
    assert int(full.state.step) == int(resumed.state.step) == full.total_steps == 8  # 2 epochs of 128 / 32
    assert np.array_equal(full.state.arch, resumed.state.arch)
    assert np.array_equal(full.state.arch_opt_state.precision, resumed.state.arch_opt_state.precision)
    for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params)):
        assert np.array_equal(a, b)
    assert float(np.max(np.abs(full.state.arch))) > 1e-3  # mu moved off its initial noise
    assert (tmp_path / "a" / "epochs.jsonl").read_text().count("\n") == 2
    # a changed config is refused before anything is touched
    from fbnas_jax.training.loop import RunMismatchError

    _, other = load_search_config(None, TINY + ["search.algo=balenas", "search.mc_samples=2"])
    with pytest.raises(RunMismatchError, match="search.mc_samples"):
        search(cfg, other, tmp_path / "a", dataset=tiny_dataset, progress=False)


def test_select_by_score_nested_and_nan_safe():
    from fbnas_jax.search.balenas import select_by_score

    cands = np.array([[0] * 6, [1] * 6, [0] * 6, [2] * 6, [3] * 6], np.int32)
    scores = {0: 1.0, 1: float("nan"), 2: 5.0, 3: 9.0}
    calls = []

    def score(enc):
        calls.append(len(enc))
        return np.array([scores[int(e[0])] for e in enc])

    out = select_by_score(score, cands, [2, 4, 5])
    assert calls == [4]  # the duplicate is scored once
    assert out[2]["encoding"].tolist() == [0] * 6 and out[2]["unique"] == 2  # NaN never wins
    assert out[4]["encoding"].tolist() == [2] * 6 and out[4]["unique"] == 3
    assert out[5]["score"] == 9.0


def test_search_config_errors():
    from fbnas_jax.config import ConfigError
    from fbnas_jax.search.differentiable import load_search_config

    with pytest.raises(ConfigError, match="did you mean 'mc_samples'"):
        load_search_config(None, ["search.mc_sample=2"])
    with pytest.raises(ConfigError, match="search.algo"):
        load_search_config(None, ["search.algo=enas"])
    with pytest.raises(ConfigError, match="select_samples"):
        load_search_config(None, ["search.select_samples=0,5"])


# --------------------------------------------------------------------------- CLI


def test_cli_balenas_on_synthetic_data(tmp_path, capsys, monkeypatch):
    from fbnas_jax.cli import main

    monkeypatch.delenv("FBNAS_NB201_CSV", raising=False)
    args = ["search", "--algo", "balenas", "--workdir", str(tmp_path / "run"), "--json", "--no-progress",
            "--select-samples", "3,5", "--control-samples", "4", "--seed", "1", "--select-indicator", "params",
            "--set",
            "data.source=synthetic", "data.subset=128", "model.channels=4", "model.cells_per_stage=1",
            "model.bn_mode=bnnas", "train.params=all", "train.batch_size=32", "train.epochs=1"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["algo"] == "balenas" and out["steps"] == 2 and out["seed"] == 1
    assert {"argmax", "tf3", "tf5", "zero_cost3", "zero_cost4"} <= set(out["picks"])
    assert out["picks"]["tf5"]["score"] >= out["picks"]["tf3"]["score"] > 0  # params (a cost: no compile)
    assert out["select_indicator"] == "params"
    assert np.allclose(np.sum(out["op_weights"], axis=1), 1.0, atol=1e-3)
    # resuming a finished run does no work and gives the same argmax
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["picks"]["argmax"] == out["picks"]["argmax"] and again["steps"] == 2


def test_cli_search_usage_errors(tmp_path, capsys):
    from fbnas_jax.cli import main

    assert main(["search", "--algo", "darts"]) == 2
    assert "--workdir" in capsys.readouterr().err
    assert main(["search", "--algo", "ea", "--indicator", "gamma"]) == 2
    assert "--checkpoint or --scores" in capsys.readouterr().err
    assert main(["search", "--algo", "darts", "--workdir", str(tmp_path), "--set", "search.algo_x=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
