#!/usr/bin/env python3
"""Small sample-data generator (used when ../shared/bench/gen_devops.py is absent).

Writes InfluxDB line protocol: measurement `cpu`, a few host tags, 10 usage
fields as clamped random walks, one point per host every --interval seconds.
  gen_sample.py --hosts 100 --hours 1 --out sample.lp
"""
import argparse
import random

FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=1451606400, help="unix seconds")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"]
    tags = ["cpu,hostname=host_%d,region=%s,rack=%d" % (h, rng.choice(regions), rng.randrange(100))
            for h in range(a.hosts)]
    state = [[rng.uniform(0, 100) for _ in FIELDS] for _ in range(a.hosts)]
    points = int(a.hours * 3600 / a.interval)
    with open(a.out, "w") as f:
        for p in range(points):
            ts = (a.start + p * a.interval) * 10**9
            for h in range(a.hosts):
                st = state[h]
                for k in range(len(FIELDS)):
                    st[k] = min(100.0, max(0.0, st[k] + rng.gauss(0, 1)))
                fields = ",".join("%s=%d" % (FIELDS[k], int(st[k])) for k in range(len(FIELDS)))
                f.write("%s %s %d\n" % (tags[h], fields, ts))


if __name__ == "__main__":
    main()
