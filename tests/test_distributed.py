"""Data-parallel training over a device mesh: 4 forced host devices give the loss and the
parameters of one device (the batch is split, BN statistics and gradients are global). The
training code is space-agnostic; the test uses the cheapest supernet to compile."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from fbnas_jax.training import distributed

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from fbnas_jax.config import load_config
    from fbnas_jax.data import make_synthetic
    from fbnas_jax.training.loop import train

    ds = make_synthetic(num_train=96, num_test=16, image_size=16, seed=0)
    out = {"devices": jax.device_count()}
    skeleton = sys.argv[2]  # a one-layer MobileNet supernet: the smallest supernet to compile
    for devices in ("1", "all"):
        cfg = load_config(None, ["model.space=mobilenet", f"model.skeleton={skeleton}", "train.batch_size=32",
                                 "train.epochs=1", "train.log_every=1", "train.learning_rate=0.5",
                                 f"train.devices={devices}", "train.sampler=" + sys.argv[1]])
        res = train(cfg, None, dataset=ds, progress=False, log=lambda m: None)
        leaves = jax.tree.leaves(jax.device_get(res.state.params))
        out[devices] = {"loss": [h["loss"] for h in res.history],
                        "params": [float(np.sum(np.abs(x))) for x in leaves],
                        "sharding": str(jax.tree.leaves(res.state.params)[0].sharding)}
    try:  # a global batch must split evenly over the devices
        from fbnas_jax.training.distributed import DataParallel, data_mesh
        DataParallel(data_mesh(jax.devices()), 30)
    except ValueError as err:
        out["uneven"] = str(err)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("sampler", ["spos"])
def test_four_devices_match_one(sampler, tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    skeleton = tmp_path / "one_layer.yaml"
    skeleton.write_text(yaml.safe_dump({"stem_channels": 8, "first_channels": 0, "widths": [8], "depths": [1],
                                        "strides": [1], "mix_channels": 16, "stem_stride": 1, "input_size": 16}))
    proc = subprocess.run([sys.executable, str(script), sampler, str(skeleton)], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    one, four = out["1"], out["all"]
    assert "'data': 4" in four["sharding"] and len(one["loss"]) == 3
    assert four["loss"] == pytest.approx(one["loss"], rel=1e-5, abs=1e-5)
    assert four["params"] == pytest.approx(one["params"], rel=1e-5, abs=1e-5)
    assert "does not split over 4 devices" in out["uneven"]


def test_device_and_host_settings(monkeypatch):
    import jax

    assert len(distributed.resolve_devices("1")) == 1
    assert distributed.resolve_devices("all") == jax.devices()
    with pytest.raises(ValueError, match="'all' or a positive integer"):
        distributed.resolve_devices("many")
    with pytest.raises(ValueError, match="device"):
        distributed.resolve_devices(10_000)
    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.initialize() is False  # a single-host run: nothing to do
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host0:1234")
    with pytest.raises(RuntimeError, match="JAX_NUM_PROCESSES, JAX_PROCESS_ID missing"):
        distributed.initialize()
    monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    assert distributed.initialize() is False  # one process: no coordinator needed
    assert distributed.local_batch_size(32, distributed.data_mesh(distributed.resolve_devices("1"))) == 32
