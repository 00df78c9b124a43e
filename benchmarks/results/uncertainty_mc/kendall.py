import glob, csv, numpy as np
from scipy.stats import kendalltau
def load(f):
    r = list(csv.reader(open(f)))[1:]
    return {a: float(v) for a, v in r}
ref = load("benchmarks/results/uncertainty_mc/unc_T10_m64_e64_s0.csv")
times = {}
for l in open("benchmarks/results/uncertainty_mc/times.txt"):
    p = l.split(); times["unc_T%s_m%s_e%s_s%s.csv" % tuple(p[:4])] = float(p[4])
for f in sorted(glob.glob("benchmarks/results/uncertainty_mc/unc_*.csv")):
    d = load(f); k = sorted(ref)
    a = np.array([ref[x] for x in k]); b = np.array([d[x] for x in k])
    print(f.split("/")[-1], "n", len(k), "tau vs ref %.3f" % kendalltau(a, b).statistic, "time", times.get(f.split("/")[-1]))
