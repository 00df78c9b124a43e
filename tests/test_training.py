"""BN-only training: frozen partition, samplers, resume, divergence, checkpoints."""
from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fbnas_jax.config import ConfigError
from fbnas_jax.spaces import nb201
from fbnas_jax.training import partition, steps
from fbnas_jax.training.checkpoint import Checkpointer
from fbnas_jax.training.loop import TrainingDivergedError, load_run, network_from_config, train


def _flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree))


def _bits_equal(a, b):
    return np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))


@pytest.fixture(scope="module")
def spos_run(tiny_dataset, tiny_config):
    cfg = tiny_config("train.max_steps=3")
    net = network_from_config(cfg, tiny_dataset.num_classes)
    init, _ = steps.init_state(net, cfg.train.seed, tiny_dataset.train_images.shape[1:],
                               steps.make_optimizer(learning_rate=0.1, total_steps=1))
    return cfg, init, train(cfg, dataset=tiny_dataset, progress=False)


def test_bn_only_training_keeps_frozen_params_bit_identical(spos_run):
    cfg, init, result = spos_run
    before, after = _flat(init.params), _flat(result.state.params)
    labels = _flat(result.labels)
    frozen = [p for p in before if labels[p] == partition.FROZEN]
    trainable = [p for p in before if labels[p] == partition.TRAINABLE]
    assert frozen and trainable
    assert all(_bits_equal(before[p], after[p]) for p in frozen)
    assert all(p[-1] in ("scale", "bias") for p in trainable)
    changed = [p for p in trainable if not np.array_equal(before[p], after[p])]
    assert len(changed) > len(trainable) // 4, "BN scale/shift should have been trained"
    assert any("conv" in "/".join(p) for p in frozen) and any("classifier" in p for p in frozen)


def test_train_all_mode_moves_conv_weights(tiny_config, tiny_dataset):
    result = train(tiny_config("train.max_steps=2", "train.params=all"), dataset=tiny_dataset, progress=False)
    assert partition.count(result.state.params, result.labels)[partition.FROZEN] == 0


def test_fairnas_group_trains_every_op_of_every_edge_once():
    group = np.asarray(steps.sample_group(jax.random.key(3), "fairnas"))
    assert group.shape == (nb201.NUM_OPS, nb201.NUM_EDGES)
    for e in range(nb201.NUM_EDGES):
        assert sorted(group[:, e]) == list(range(nb201.NUM_OPS))
    spos = np.asarray(steps.sample_group(jax.random.key(3), "spos"))
    assert spos.shape == (1, 6) and spos.min() >= 0 and spos.max() < nb201.NUM_OPS
    with pytest.raises(ValueError, match="sampler"):
        steps.sample_group(jax.random.key(0), "greedy")


def test_unchosen_ops_keep_running_stats(spos_run):
    cfg, _, result = spos_run
    key = jax.random.key(cfg.train.seed)
    chosen = np.stack([np.asarray(steps.sample_group(jax.random.fold_in(key, s), "spos"))[0]
                       for s in range(int(result.state.step))])
    stats = result.state.batch_stats["cell_0"]
    bn_of = {"nor_conv_1x1": ("nor_conv_1x1", "bn"), "nor_conv_3x3": ("nor_conv_3x3", "bn"),
             "skip_connect": ("skip_connect_bn",), "avg_pool_3x3": ("avg_pool_3x3_bn",)}
    for e in range(nb201.NUM_EDGES):
        for k, name in enumerate(nb201.OPS):
            if name not in bn_of:
                continue
            s = stats[f"edge_{e}"]
            for part in bn_of[name]:
                s = s[part]
            untouched = np.array_equal(s["mean"], np.zeros_like(s["mean"]))
            assert untouched == (k not in chosen[:, e]), (e, name)


@pytest.mark.parametrize("sampler", ["spos", "fairnas"])
def test_switch_step_equals_select_step(tiny_config, tiny_dataset, sampler):
    """Training runs only the chosen ops (``strategy="switch"``, the default): the step must
    give what the all-ops ``"select"`` step gives, parameters and running statistics."""
    cfg = tiny_config()
    net = network_from_config(cfg, tiny_dataset.num_classes)
    tx = steps.make_optimizer(learning_rate=0.5, total_steps=4)
    state, labels = steps.init_state(net, 0, tiny_dataset.train_images.shape[1:], tx)
    batch = {"image": jnp.asarray(tiny_dataset.train_images[:16]), "label": jnp.asarray(tiny_dataset.train_labels[:16])}
    out = {}
    for strategy in ("select", "switch"):
        step = steps.make_train_step(net, tx, labels, sampler=sampler, strategy=strategy)
        out[strategy] = step(state, batch)
    (sel, m_sel), (sw, m_sw) = out["select"], out["switch"]
    np.testing.assert_allclose(float(m_sw["loss"]), float(m_sel["loss"]), rtol=1e-5)
    a, b = _flat(sel.variables), _flat(sw.variables)
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_allclose(b[path], a[path], rtol=1e-4, atol=1e-5, err_msg="/".join(path))
    with pytest.raises(ValueError, match="strategy must be"):
        steps.make_train_step(net, tx, labels, strategy="all")


@pytest.mark.parametrize("sampler", ["spos", "fairnas"])
def test_resume_after_kill_is_bit_identical(tiny_config, tiny_dataset, tmp_path, sampler):
    cfg = tiny_config("train.max_steps=5", "train.checkpoint_every=2", f"train.sampler={sampler}")
    full = train(cfg, tmp_path / "full", dataset=tiny_dataset, progress=False)
    killed = train(cfg, tmp_path / "resumed", dataset=tiny_dataset, progress=False, stop_after=3)
    assert int(killed.state.step) == 3
    messages = []
    resumed = train(cfg, tmp_path / "resumed", dataset=tiny_dataset, progress=False, log=messages.append)
    assert any("resumed from step 2" in m for m in messages)
    a, b = _flat(full.state.variables), _flat(resumed.state.variables)
    assert a.keys() == b.keys()
    assert all(_bits_equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tiny_dataset, tmp_path):
    cfg = tiny_config("train.max_steps=8", "train.checkpoint_every=1", "train.learning_rate=1e30",
                      "train.schedule=constant")
    with pytest.raises(TrainingDivergedError, match=r"diverged at step \d+") as info:
        train(cfg, tmp_path, dataset=tiny_dataset, progress=False)
    err = info.value
    # step 1 is finite (huge but finite update); the next forward overflows
    assert err.step >= 2 and err.checkpoint_step == err.step - 1
    assert f"step {err.step}" in str(err) and f"(step {err.checkpoint_step}) is kept" in str(err)
    run = load_run(tmp_path)
    assert run.step == err.checkpoint_step
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(run.variables))


def test_corrupt_checkpoint_falls_back_to_previous(tiny_config, tiny_dataset, tmp_path):
    cfg = tiny_config("train.max_steps=4", "train.checkpoint_every=2")
    train(cfg, tmp_path, dataset=tiny_dataset, progress=False)
    ckpt_dir = tmp_path / "checkpoints"
    latest = ckpt_dir / "4"
    assert latest.is_dir()
    for f in latest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "manifest" in f.name or f.name.endswith(".ocdbt"):
            f.write_bytes(b"garbage")
    for d in latest.rglob("d"):
        shutil.rmtree(d, ignore_errors=True)
    state_template, _ = steps.init_state(
        network_from_config(cfg, 10), 0,
        tiny_dataset.train_images.shape[1:], steps.make_optimizer(learning_rate=0.1, total_steps=1))
    messages = []
    ckpt = Checkpointer(ckpt_dir)
    restored = ckpt.restore_latest(state_template, warn=messages.append)
    ckpt.close()
    assert restored is not None and int(restored.step) == 2
    assert any("step 4" in m and "corrupt" in m for m in messages)


def test_workdir_of_another_model_is_refused(tiny_config, tiny_dataset, tmp_path):
    train(tiny_config("train.max_steps=1"), tmp_path, dataset=tiny_dataset, progress=False)
    with pytest.raises(ConfigError, match=r"another config .*model.bn_mode: .fair. -> .bnnas."):
        train(tiny_config("train.max_steps=1", "model.bn_mode=bnnas"), tmp_path, dataset=tiny_dataset,
              progress=False)


def test_fixed_sampler_needs_arch(tiny_config, tiny_dataset):
    with pytest.raises(ConfigError, match="model.arch"):
        train(tiny_config("train.sampler=fixed"), dataset=tiny_dataset, progress=False)
    arch = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    result = train(tiny_config("train.sampler=fixed", f"model.arch={arch}", "train.max_steps=2"),
                   dataset=tiny_dataset, progress=False)
    assert "nor_conv_1x1" not in result.state.params["cell_0"]["edge_0"]
    assert int(result.state.step) == 2


def test_masked_apply_updates_never_touches_frozen_leaves():
    params = {"conv": {"kernel": jnp.array([-0.0, 1.0])}, "bn": {"scale": jnp.array([1.0, 2.0])}}
    labels = partition.param_labels(params)
    assert labels == {"conv": {"kernel": "frozen"}, "bn": {"scale": "trainable"}}
    zero = jax.tree.map(jnp.zeros_like, params)
    out = partition.apply_updates(params, zero, labels)
    assert np.signbit(np.asarray(out["conv"]["kernel"])[0])  # -0.0 stays -0.0
    with pytest.raises(ValueError, match="bn_only"):
        partition.param_labels(params, "some")


def test_warmup_then_cosine_schedule_matches_bn_nas_shape():
    # BN-NAS: 0.2 -> 0.8 linearly over the warm-up, then cosine from 0.8 to 0 at the end.
    lr = steps.learning_rate_schedule(learning_rate=0.8, total_steps=100, warmup_steps=50,
                                      warmup_start_factor=0.25)
    np.testing.assert_allclose([lr(0), lr(25), lr(50), lr(75), lr(100)],
                               [0.2, 0.5, 0.8, 0.4, 0.0], atol=1e-6)
    assert np.all(np.diff([lr(i) for i in range(50)]) > 0)
    plain = steps.learning_rate_schedule(learning_rate=0.8, total_steps=100)
    np.testing.assert_allclose([plain(0), plain(50), plain(100)], [0.8, 0.4, 0.0], atol=1e-6)
    assert steps.learning_rate_schedule(learning_rate=0.3, total_steps=10, schedule="constant") == 0.3
    with pytest.raises(ValueError, match="warmup_steps"):
        steps.learning_rate_schedule(learning_rate=0.8, total_steps=10, warmup_steps=10)


def test_warmup_epochs_become_steps_and_bad_recipes_are_config_errors(tiny_config, tiny_dataset):
    from fbnas_jax.training.loop import optimizer_from_config, warmup_steps

    cfg = tiny_config("train.epochs=4", "train.warmup_epochs=1.5")
    assert warmup_steps(cfg, steps_per_epoch=8) == 12
    tx = optimizer_from_config(cfg, total_steps=32, steps_per_epoch=8)
    assert tx is not None
    for bad, match in [("train.warmup_epochs=4", "warmup_epochs"), ("train.warmup_epochs=-1", "warmup_epochs"),
                       ("train.warmup_start_factor=1.5", "warmup_start_factor"),
                       ("train.learning_rate=0", "learning_rate"), ("train.weight_decay=-1e-4", "weight_decay"),
                       ("train.label_smoothing=1", "label_smoothing")]:
        with pytest.raises(ConfigError, match=match):
            tiny_config("train.epochs=4", bad)


def test_training_reports_per_epoch_means(tiny_config, tiny_dataset):
    cfg = tiny_config("train.epochs=2", "train.warmup_epochs=0.5", "train.weight_decay=1e-4",
                      "train.label_smoothing=0.1", "train.log_every=100")
    result = train(cfg, dataset=tiny_dataset, progress=False)
    assert [e["epoch"] for e in result.epochs] == [1, 2]
    assert all(e["steps"] == 8 and np.isfinite(e["loss"]) and 0 <= e["accuracy"] <= 1 for e in result.epochs)
    assert len(result.history) == 1  # only the final step is logged at log_every=100


def test_time_limit_stops_with_a_checkpoint(tiny_config, tiny_dataset, tmp_path):
    # the config of test_training_reports_per_epoch_means: its compiled step is reused
    cfg = tiny_config("train.epochs=2", "train.warmup_epochs=0.5", "train.weight_decay=1e-4",
                      "train.label_smoothing=0.1", "train.log_every=100")
    result = train(cfg, tmp_path / "run", dataset=tiny_dataset, progress=False, time_limit_s=0.0)
    assert result.time_limited and int(result.state.step) < result.total_steps
    assert load_run(tmp_path / "run").step == int(result.state.step)  # saved where it stopped
    assert result.history[-1]["step"] == int(result.state.step)
