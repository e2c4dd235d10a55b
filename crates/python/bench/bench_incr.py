"""incr calls per second: the Rust-backed BanHammer against a pure-Python one, in one run.

    python crates/python/bench/bench_incr.py [--calls N] [--repeat R]

The pure-Python ``PyBanHammer`` below implements the same specification the straightforward
way (a deque of timestamps per token and metric, a lock, dicts of ban and notice ends). Both
run the seed's rules (example_app.BANS with no-op actions) on the same calls, with wall time.
Before timing, both are driven by one manual clock through a mixed workload and must give the
same answers and action calls (tests/test_reference.py checks this too).
"""

import argparse
import random
import threading
import time
from bisect import bisect_right
from collections import deque

from banhammer import BanHammer, ManualClock

RATE_WINDOWS = (60, 600, 3600)


class PyBanHammer:
    """The seed API in plain Python: exact windows as deques of event seconds."""

    def __init__(self, bans, return_rates=False, clock=time.time):
        self._rules = {}
        self._horizon = {}
        for metric, spec in bans.items():
            tiers = []
            for t in spec["thresholds"]:
                actions = tuple(t["action"])
                blocks = any(getattr(a, "__name__", None) == "block_local" for a in actions)
                tiers.append((t["limit"], t["window"], actions, t["action_duration"], blocks))
            self._rules[metric] = tiers
            self._horizon[metric] = max([RATE_WINDOWS[-1]] + [t[1] for t in tiers])
        self._return_rates = return_rates
        self._clock = clock
        self._events = {}  # (token, metric) -> deque of event seconds, oldest first
        self._ban_until = {}  # token -> end of its ban
        self._notice_until = {}  # (token, metric, tier) -> end of the notice
        self._lock = threading.Lock()

    def incr(self, token, metric):
        now = int(self._clock())
        tiers = self._rules[metric]
        calls = []
        with self._lock:
            key = (token, metric)
            events = self._events.get(key)
            if events is None:
                events = self._events[key] = deque()
            events.append(now)
            cutoff = now - self._horizon[metric]
            while events[0] <= cutoff:
                events.popleft()
            n = len(events)
            for tier, (limit, window, actions, duration, blocks) in enumerate(tiers):
                if n - bisect_right(events, now - window) < limit:
                    continue
                episode = token if blocks else (token, metric, tier)
                ends = self._ban_until if blocks else self._notice_until
                until = ends.get(episode, 0)
                if until <= now and actions:
                    calls.append((actions, (token, duration, metric, window, limit)))
                ends[episode] = max(until, now + duration)
            passed = self._ban_until.get(token, 0) <= now
            if self._return_rates:
                stats = {
                    "token_rate_1m": n - bisect_right(events, now - 60),
                    "token_rate_10m": n - bisect_right(events, now - 600),
                    "token_rate_60m": n - bisect_right(events, now - 3600),
                }
        # Like the Rust package: actions run after the state is updated, outside the lock.
        for actions, args in calls:
            for action in actions:
                action(*args)
        return (passed, stats) if self._return_rates else passed


def seed_bans(log=None):
    """example_app.BANS with actions that do nothing, or append to `log`."""

    def make(name):
        def action(token, duration, key, window, limit):
            if log is not None:
                log.append((name, token, duration, key, window, limit))

        action.__name__ = name
        return action

    block_local, report_central, record_local = (
        make("block_local"),
        make("report_central"),
        make("record_local"),
    )
    return {
        "login_failed": {
            "thresholds": [
                {"limit": 10, "window": 3600, "action": [block_local], "action_duration": 3600},
                {"limit": 100, "window": 3600, "action": [report_central], "action_duration": 86400},
            ]
        },
        "login_successful": {
            "thresholds": [
                {"limit": 10, "window": 60, "action": [record_local], "action_duration": 3600},
            ]
        },
    }


def mixed_workload(calls, tokens, seed=7):
    """Deterministic (token, metric, seconds to advance first) triples: single events with
    random gaps (so windows drain and bans end) and bursts (so every threshold is reached)."""
    rng = random.Random(seed)
    gaps = (0, 0, 0, 0, 1, 1, 2, 7, 59, 60, 61, 599, 600, 3599, 3600, 3601, 90_000)
    out = []
    while len(out) < calls:
        token = f"10.0.0.{rng.randrange(tokens)}"
        metric = rng.choice(("login_failed", "login_successful"))
        gap = rng.choice(gaps) if rng.random() < 0.3 else 0
        burst = rng.randint(2, 120) if rng.random() < 0.05 else 1
        out.append((token, metric, gap))
        out.extend((token, metric, 0) for _ in range(burst - 1))
    return out[:calls]


def compare(calls=20_000, tokens=40, return_rates=True):
    """Drives both implementations with one manual clock; returns (answers, actions) of each."""
    results = []
    for make in (BanHammer, PyBanHammer):
        clock = ManualClock(1_700_000_000)
        log = []
        bh = make(seed_bans(log), return_rates, clock=clock)
        answers = []
        for token, metric, advance in mixed_workload(calls, tokens):
            if advance:
                clock.advance(advance)
            answers.append(bh.incr(token, metric))
        results.append((answers, log))
    return results


def bench(make, calls, tokens, return_rates, repeat):
    """Best calls/s over `repeat` runs of `calls` incr on a fresh instance."""
    names = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(tokens)]
    workload = [(names[i % tokens], "login_failed" if i % 3 else "login_successful") for i in range(calls)]
    best = 0.0
    for _ in range(repeat):
        bh = make(seed_bans(), return_rates)
        incr = bh.incr
        start = time.perf_counter()
        for token, metric in workload:
            incr(token, metric)
        elapsed = time.perf_counter() - start
        best = max(best, calls / elapsed)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rust, python = compare()
    assert rust == python, "the two implementations disagree"
    refused = sum(1 for passed, _ in rust[0] if not passed)
    kinds = sorted({call[0] for call in rust[1]})
    print(
        f"check: both give the same {len(rust[0])} answers ({refused} refused) "
        f"and {len(rust[1])} action calls ({', '.join(kinds)})"
    )

    print(f"{'workload':<44} {'rust calls/s':>14} {'python calls/s':>15} {'ratio':>7}")
    for tokens, return_rates, label in [
        (1_000, False, "1,000 tokens (most banned), passed only"),
        (1_000, True, "1,000 tokens (most banned), return_rates"),
        (100_000, False, "100,000 tokens (none banned), passed only"),
        (100_000, True, "100,000 tokens (none banned), return_rates"),
    ]:
        r = bench(BanHammer, args.calls, tokens, return_rates, args.repeat)
        p = bench(PyBanHammer, args.calls, tokens, return_rates, args.repeat)
        print(f"{label:<44} {r:>14,.0f} {p:>15,.0f} {r / p:>6.1f}x")


if __name__ == "__main__":
    main()
