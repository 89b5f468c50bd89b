"""Fairness benchmark: a simulated day of uploads on three plans, three dispatch policies side by side.

Heavy-tailed arrivals (Pareto upload counts: a few tenants upload most files, partly in bursts)
from many tenants on basic / standard / premium, build times log-normal around ten minutes,
the account's concurrent limit below the sum of the plans' limits. Each policy starts builds at
every arrival and every finish (an event-driven simulation, no database):

- fifo: oldest build first, across plans, within the plan, tenant and account limits;
- round robin: higher tiers first, tenants of a plan take turns (least recently served first),
  the dispatcher before issue 14 (`builds.dispatch.choose` with no fair-share facts);
- policy: `builds.dispatch.choose` as the portal runs it: decayed usage per weight
  (`tenants.fairshare`, half-life `--half-life-hours`) charged while builds run, as the
  scheduler tick does (`builds.usage`: a running build's time at most once a simulated minute,
  the rest when it ends), the newcomer reservation (`--reserved-share`) and borrowing between
  plans (`--borrowing`);
- policy, end charge: the same, with usage charged only when a build ends (before issue 14's
  running charge), for comparison.

Printed per policy: per-tenant wait (upload -> start) p50 / p95 / max, shown as the median
tenant's and the worst tenant's; Jain's fairness index of normalised service (build-seconds
started within the day / build-seconds uploaded within the day, per tenant); utilisation of
account capacity (busy slot-seconds / limit x day); limit violations (checked after every
round: plan limit (+ borrowing), tenant limit, account limit), which must be 0.

    .venv/bin/python bench/fairness.py [--tenants 60 --uploads 3500 --seed 7]
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import random
import statistics
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlaas_portal.settings")
django.setup()  # the dispatcher's module imports its models; the simulation itself uses no database

from builds.dispatch import Candidate, FairShare, PlanLimits, choose  # noqa: E402
from tenants import fairshare  # noqa: E402

DAY = 86_400.0


@dataclass
class Job:
    build_id: int
    tenant_id: int
    plan_id: int
    arrival: float
    duration: float
    start: float | None = None


def make_day(tenants: int, uploads: int, seed: int) -> tuple[dict[int, int], list[Job]]:
    rng = random.Random(seed)
    plan_of = {t: 1 + t % 3 for t in range(tenants)}
    weights = [rng.paretovariate(1.1) for _ in range(tenants)]
    owners = rng.choices(range(tenants), weights=weights, k=uploads)
    jobs: list[Job] = []
    bursty = set(sorted(range(tenants), key=lambda t: -weights[t])[: max(1, tenants // 10)])
    burst_at: dict[int, float] = {}
    for i, tenant in enumerate(owners):
        if tenant in bursty and rng.random() < 0.6:  # the heavy uploaders drop folders of files at once
            at = burst_at.setdefault(tenant, rng.uniform(0, DAY * 0.7)) + rng.uniform(0, 60)
        else:
            at = rng.uniform(0, DAY)
        duration = min(4 * 3600.0, rng.lognormvariate(math.log(480), 0.8))
        jobs.append(Job(i, tenant, plan_of[tenant], at, duration))
    jobs.sort(key=lambda j: j.arrival)
    return plan_of, jobs


def fifo_choose(candidates, plans, running_plan, running_tenant, account_running, account_limit, **_):
    chosen, free = [], account_limit - account_running
    running_plan, running_tenant = dict(running_plan), dict(running_tenant)
    for cand in sorted(candidates, key=lambda c: (c.created_at, c.build_id)):
        plan = plans[cand.plan_id]
        if free <= 0:
            break
        if running_plan.get(cand.plan_id, 0) >= plan.plan_limit or \
                running_tenant.get(cand.tenant_id, 0) >= plan.tenant_limit:
            continue
        chosen.append(cand)
        running_plan[cand.plan_id] = running_plan.get(cand.plan_id, 0) + 1
        running_tenant[cand.tenant_id] = running_tenant.get(cand.tenant_id, 0) + 1
        free -= 1
    return chosen


RUNNING_CHARGE_EVERY = 60.0  # seconds, as builds.usage.CHARGE_EVERY_SECONDS


def simulate(policy: str, jobs: list[Job], plans: dict[int, PlanLimits], plan_of: dict[int, int],
             account_limit: int, *, half_life_hours: float, reserved_share: float) -> dict:
    jobs = [Job(j.build_id, j.tenant_id, j.plan_id, j.arrival, j.duration) for j in jobs]
    by_id = {j.build_id: j for j in jobs}
    events: list[tuple[float, int, str, int]] = [(j.arrival, 1, "arrive", j.build_id) for j in jobs]
    heapq.heapify(events)
    queued: dict[int, list[Job]] = {}  # per tenant, oldest first
    running_plan: dict[int, int] = {}
    running_tenant: dict[int, int] = {}
    last_served: dict[int, object] = {}
    usage: dict[int, float | None] = {}
    charged_until: dict[int, float] = {}  # running build -> simulated time its run is charged up to
    charge_running = policy == "policy"

    def charge(tenant_id: int, seconds: float, at_s: float) -> None:
        usage[tenant_id] = fairshare.charge_log2(usage.get(tenant_id), seconds=seconds,
                                                 at=fairshare.EPOCH + timedelta(seconds=at_s),
                                                 half_life_hours=half_life_hours)

    violations, busy = 0, 0.0
    running_now, last_t = 0, 0.0
    while events:
        now, _, kind, build_id = heapq.heappop(events)
        if last_t < DAY:
            busy += running_now * (min(now, DAY) - last_t)
        last_t = now
        job = by_id[build_id]
        if kind == "arrive":
            queued.setdefault(job.tenant_id, []).append(job)
        else:
            running_now -= 1
            running_plan[job.plan_id] -= 1
            running_tenant[job.tenant_id] -= 1
            charge(job.tenant_id, now - charged_until.pop(job.build_id, job.start), now)  # the rest of its run
        if events and events[0][0] == now:
            continue  # everything that happens at this instant first: one round for them all
        at = fairshare.EPOCH + timedelta(seconds=now)
        if charge_running:  # the scheduler tick's charge of running builds (builds.usage.running_usage_charge)
            for running_id, since in list(charged_until.items()):
                if now - since >= RUNNING_CHARGE_EVERY:
                    charge(by_id[running_id].tenant_id, now - since, now)
                    charged_until[running_id] = now
        # as the dispatcher fetches them: per tenant only its oldest builds that its limit lets start
        candidates = [Candidate(j.build_id, j.tenant_id, j.plan_id, fairshare.EPOCH + timedelta(seconds=j.arrival))
                      for t, q in queued.items() for j in q[:plans[plan_of[t]].tenant_limit]]
        if policy == "fifo":
            chosen = fifo_choose(candidates, plans, running_plan, running_tenant, running_now, account_limit)
        elif policy == "round robin":
            chosen = choose(candidates, plans, running_plan, running_tenant, running_now, account_limit, last_served)
        else:
            waiting = set(queued)
            half_lives = (at - fairshare.EPOCH).total_seconds() / (half_life_hours * 3600)
            fair = FairShare(
                keys={t: fairshare.fair_share_key(usage.get(t), 1.0) for t in waiting},
                weights={t: 1.0 for t in waiting},
                pick_charge_log2={p: math.log2(480) + half_lives for p in plans},
                new_tenants=frozenset(t for t in waiting if fairshare.is_newly_active(
                    usage.get(t), running=running_tenant.get(t, 0), at=at, half_life_hours=half_life_hours)),
                reserved=math.ceil(reserved_share * account_limit))
            chosen = choose(candidates, plans, running_plan, running_tenant, running_now, account_limit,
                            last_served, fair)
        for cand in chosen:
            job = by_id[cand.build_id]
            queued[job.tenant_id].remove(job)
            if not queued[job.tenant_id]:
                del queued[job.tenant_id]
            job.start = now
            charged_until[job.build_id] = now
            running_now += 1
            running_plan[job.plan_id] = running_plan.get(job.plan_id, 0) + 1
            running_tenant[job.tenant_id] = running_tenant.get(job.tenant_id, 0) + 1
            last_served[job.tenant_id] = at
            heapq.heappush(events, (now + job.duration, 0, "finish", job.build_id))
        violations += running_now > account_limit
        violations += sum(n > plans[p].plan_limit + plans[p].borrowing_limit for p, n in running_plan.items())
        violations += sum(n > plans[plan_of[t]].tenant_limit for t, n in running_tenant.items())
    return _figures(jobs, account_limit, busy, int(violations))


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _figures(jobs: list[Job], account_limit: int, busy: float, violations: int) -> dict:
    waits: dict[int, list[float]] = {}
    demand: dict[int, float] = {}
    served: dict[int, float] = {}
    for job in jobs:
        waits.setdefault(job.tenant_id, []).append(job.start - job.arrival)
        demand[job.tenant_id] = demand.get(job.tenant_id, 0) + job.duration
        if job.start < DAY:
            served[job.tenant_id] = served.get(job.tenant_id, 0) + job.duration
    p95 = {t: percentile(w, 0.95) for t, w in waits.items()}
    p50 = {t: statistics.median(w) for t, w in waits.items()}
    x = [served.get(t, 0) / demand[t] for t in demand]
    jain = sum(x) ** 2 / (len(x) * sum(v * v for v in x))
    return {"p50_median_tenant": statistics.median(p50.values()), "p50_worst_tenant": max(p50.values()),
            "p95_median_tenant": statistics.median(p95.values()), "p95_worst_tenant": max(p95.values()),
            "max_wait": max(max(w) for w in waits.values()), "jain": jain,
            "utilisation": busy / (account_limit * DAY), "violations": violations,
            "worst_tenant": max(p95, key=p95.get), "builds": len(jobs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=60)
    parser.add_argument("--uploads", type=int, default=3500)
    parser.add_argument("--account-limit", type=int, default=36)
    parser.add_argument("--half-life-hours", type=float, default=6.0)
    parser.add_argument("--reserved-share", type=float, default=0.05)
    parser.add_argument("--borrowing", type=int, default=6, help="each plan's borrowing_limit (policy only)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    plan_of, jobs = make_day(args.tenants, args.uploads, args.seed)
    base = {1: PlanLimits(1, tier_rank=1, plan_limit=10, tenant_limit=4),
            2: PlanLimits(2, tier_rank=2, plan_limit=14, tenant_limit=6),
            3: PlanLimits(3, tier_rank=3, plan_limit=18, tenant_limit=8)}
    borrowing = {p: PlanLimits(b.plan_id, b.tier_rank, b.plan_limit, b.tenant_limit, args.borrowing)
                 for p, b in base.items()}
    counts = sorted((sum(1 for j in jobs if j.tenant_id == t) for t in plan_of), reverse=True)
    print(f"day: {len(jobs)} uploads from {args.tenants} tenants on 3 plans (top 10% of tenants upload "
          f"{sum(counts[:max(1, len(counts) // 10)]) / len(jobs):.0%}); build time log-normal, median 8 min; "
          f"account limit {args.account_limit}; plan limits basic 10/tenant 4, standard 14/tenant 6, premium "
          f"18/tenant 8; seed {args.seed}")
    print(f"policy: half-life {args.half_life_hours:g} h, reserved share {args.reserved_share:g}, borrowing limit "
          f"{args.borrowing} per plan")
    header = (f"{'':18} {'wait p50 (median/worst tenant)':>32} {'wait p95 (median/worst tenant)':>32} "
              f"{'max wait':>10} {'Jain':>6} {'utilisation':>12} {'violations':>11}")
    print(header)
    results = {}
    for name, plans in (("fifo", base), ("round robin", base), ("policy", borrowing),
                        ("policy, end charge", borrowing)):
        r = simulate(name, jobs, plans, plan_of, args.account_limit, half_life_hours=args.half_life_hours,
                     reserved_share=args.reserved_share)
        results[name] = r
        print(f"{name:18} {_m(r['p50_median_tenant']):>15} / {_m(r['p50_worst_tenant']):>14} "
              f"{_m(r['p95_median_tenant']):>15} / {_m(r['p95_worst_tenant']):>14} {_m(r['max_wait']):>10} "
              f"{r['jain']:6.3f} {r['utilisation']:11.1%} {r['violations']:>11}")
    rr, new = results["round robin"], results["policy"]
    verdict = new["p95_worst_tenant"] < rr["p95_worst_tenant"] and new["utilisation"] >= rr["utilisation"] - 1e-9
    print(f"policy vs round robin: worst tenant's p95 {_m(new['p95_worst_tenant'])} vs {_m(rr['p95_worst_tenant'])}, "
          f"utilisation {new['utilisation']:.1%} vs {rr['utilisation']:.1%}: "
          f"{'better without lowering utilisation' if verdict else 'NOT better'}")
    if any(r["violations"] for r in results.values()):
        sys.exit("limit violations: see the table")


def _m(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
