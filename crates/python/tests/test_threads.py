"""Many Python threads on one BanHammer: exact counts, one ban, one action call, no deadlock."""

import threading

from banhammer import BanHammer, ManualClock

T0 = 1_000_000
THREADS = 8
PER_THREAD = 2000


def run_threads(work):
    barrier = threading.Barrier(THREADS)

    def start(i):
        barrier.wait()  # all threads start together, so their calls really interleave
        work(i)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"


def test_concurrent_incr_counts_exactly_and_bans_once():
    blocked = []

    def block_local(token, duration, key, window, limit):
        blocked.append((token, duration, key, window, limit))

    limit = THREADS * PER_THREAD // 2
    bh = BanHammer(
        {
            "hits": {"thresholds": [{"limit": limit, "window": 3600, "action": [block_local], "action_duration": 3600}]},
            "seen": {"thresholds": []},
        },
        clock=ManualClock(T0),
    )
    passed = [0] * THREADS

    def work(i):
        n = 0
        for j in range(PER_THREAD):
            if bh.incr("shared", "hits"):
                n += 1
            bh.incr(f"t{i}-{j % 50}", "seen")
        passed[i] = n

    run_threads(work)
    # Exactly limit - 1 events passed: the limit-th and every later one were refused.
    assert sum(passed) == limit - 1
    assert blocked == [("shared", 3600, "hits", 3600, limit)]
    assert bh.status("shared", "hits")["token_rate_60m"] == THREADS * PER_THREAD
    everything = bh.status_all()
    assert len(everything) == 1 + THREADS * 50
    for i in range(THREADS):
        for k in range(50):
            assert everything[f"t{i}-{k}"]["seen"]["token_rate_60m"] == PER_THREAD // 50


def test_concurrent_actions_that_call_back_in_do_not_deadlock():
    seen = []
    lock = threading.Lock()

    def block_local(token, duration, key, window, limit):
        # Each thread's own call, after the engine released its lock: call back in.
        banned = bh.status(token, key)["banned"]
        bh.incr("observer", "audit")
        with lock:
            seen.append((token, banned))

    now = [float(T0)]
    bh = BanHammer(
        {
            "m": {"thresholds": [{"limit": 3, "window": 60, "action": [block_local], "action_duration": 60}]},
            "audit": {"thresholds": []},
        },
        clock=lambda: now[0],  # a Python callable clock, read by every thread
    )

    def work(i):
        for j in range(300):
            bh.incr(f"token-{i}-{j}", "m")
            bh.incr(f"token-{i}-{j}", "m")
            bh.incr(f"token-{i}-{j}", "m")  # the third bans, and runs the action

    run_threads(work)
    assert len(seen) == THREADS * 300
    assert all(banned for _, banned in seen)
    assert len({token for token, _ in seen}) == THREADS * 300
    assert bh.status("observer", "audit")["token_rate_1m"] == THREADS * 300
    assert bh.action_errors == 0
