"""Compile-only timing of the routed CPI jobs (expressivity, trainability, uncertainty) of the
tree this runs from: one JSON line (compile seconds, per job, load average before and after).

Used to compare two trees back to back at the same load (run from each tree's root):

    PYTHONPATH=. python benchmarks/route_compile_only.py C N TAG

Same setup as ``benchmarks/route_cpi.py --executions route --chunks route=25 --mc-samples 3``.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
import route_cpi  # noqa: E402

c, n, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
args = route_cpi.parse_args(["--sizes", f"{c}:{n}", "--executions", "route", "--chunks", "route=25", "--mc-samples", "3"])
enc = route_cpi.architectures(args)
ctx = route_cpi.make_context(args, c, n)
load = os.getloadavg()
t0 = time.perf_counter()
jobs = route_cpi.compile_cpi(ctx, "route", 25, enc)
total = time.perf_counter() - t0
per = {j["job"].label: round(j["compiled"].compile_s, 2) for j in jobs}
print(json.dumps({"tree": tag, "C": c, "N": n, "compile_s": round(total, 2), "per_job_s": per,
                  "loadavg_before": load, "loadavg_after": os.getloadavg()}), flush=True)
