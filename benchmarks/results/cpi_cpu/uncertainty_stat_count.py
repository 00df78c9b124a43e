"""old (stat_weights) vs new (stat_count) MC-BN uncertainty (sequential), and new stacked; map execution,
interleaved repeats; wall and process CPU seconds. Kept beside its result as the record of that
measurement (it monkeypatches the pre-change form back in). Usage, from the repository root:
python benchmarks/results/cpi_cpu/uncertainty_stat_count.py T M E archs chunk repeats"""
import sys, time, os, json, dataclasses
sys.path.insert(0, "benchmarks")
import numpy as np, jax, jax.numpy as jnp
import vs_pytorch
from fbnas_jax import engine
from fbnas_jax.indicators import supernet as S
from fbnas_jax.models.layers import ForwardMode

def old_probs(net, variables, train_images, images, encoding, *, stacked=False):
    n_train = train_images.shape[1]
    w = jnp.concatenate([jnp.ones((n_train,), jnp.float32), jnp.zeros((images.shape[0],), jnp.float32)])
    mode = ForwardMode(train=True, stat_weights=w)
    def one(batch):
        x = jnp.concatenate([batch, images], axis=0)
        logits = net.apply(variables, x, encoding, mode=mode)[n_train:]
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return jax.lax.scan(lambda c, b: (c, one(b)), None, train_images)[1]

T, M, E, n, chunk, reps = (int(a) for a in sys.argv[1:7])
args = vs_pytorch.parse_args(["--ours-only", "--bn-mode", "fair", "--mc-samples", str(T), "--mc-batch-size", str(M),
                              "--batch-size", str(E)])
setup = vs_pytorch.make_setup(args, 8, 1, n)
ctx, archs = setup["ctx"], setup["archs"]
job = engine.plan(ctx, ["uncertainty"], execution="map")[0]
dev = [jax.devices()[0]]
comp = {"new_sequential": engine.compile_job(ctx, job, chunk, dev, (6,))}
ctx_st = dataclasses.replace(ctx, options=dict(ctx.options, uncertainty={"mc_batching": "stacked"}))
comp["new_stacked"] = engine.compile_job(ctx_st, job, chunk, dev, (6,))
real = S.mc_bn_probs
S.mc_bn_probs = old_probs
comp["old_sequential"] = engine.compile_job(ctx, job, chunk, dev, (6,))
S.mc_bn_probs = real
res = {k: {"wall": [], "cpu": []} for k in comp}
vals = {}
names = list(comp)
load0 = os.getloadavg()
for r in range(reps):
    for name in (names if r % 2 == 0 else names[::-1]):
        w0, c0 = time.perf_counter(), time.process_time()
        out = np.concatenate([np.asarray(jax.device_get(comp[name].run(archs[i:i + chunk]))["uncertainty"])
                              for i in range(0, n, chunk)])
        res[name]["wall"].append(time.perf_counter() - w0); res[name]["cpu"].append(time.process_time() - c0)
        vals[name] = out
summary = {"T": T, "M": M, "E": E, "archs": n, "chunk": chunk, "repeats": reps, "load_before": load0,
           "load_after": os.getloadavg(), "jax": jax.__version__,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
for k, v in res.items():
    summary[k] = {"median_wall_s": float(np.median(v["wall"])), "median_cpu_s": float(np.median(v["cpu"])),
                  "archs_per_s_wall": n / float(np.median(v["wall"])), "wall": v["wall"], "cpu": v["cpu"],
                  "max_rel_diff_vs_old": float(np.max(np.abs(vals[k] - vals["old_sequential"]) /
                                                      np.maximum(np.abs(vals["old_sequential"]), 1e-12)))}
print(json.dumps(summary, indent=1))
