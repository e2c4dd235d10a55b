"""BanHammer beyond the seed example: configuration errors, actions, clocks, errors, shapes."""

import logging
import time

import pytest

import banhammer
from banhammer import BanHammer, ManualClock

T0 = 1_000_000


def rule(limit, window, actions, duration):
    return {"limit": limit, "window": window, "action": actions, "action_duration": duration}


def block_local(token, duration, key, window, limit):
    pass


def notify(token, duration, key, window, limit):
    pass


# --- configuration -------------------------------------------------------------------------


def good_bans():
    return {
        "login_failed": {
            "thresholds": [rule(10, 3600, [block_local], 3600), rule(100, 3600, [notify], 86400)]
        }
    }


def with_threshold(index, **changes):
    bans = good_bans()
    bans["login_failed"]["thresholds"][index].update(changes)
    return bans


@pytest.mark.parametrize(
    "bans, message",
    [
        (with_threshold(1, window=0), "bans['login_failed'].thresholds[1].window: must be a positive integer, not 0"),
        (with_threshold(0, window=-60), "bans['login_failed'].thresholds[0].window: must be a positive integer, not -60"),
        (with_threshold(0, window=1.5), "bans['login_failed'].thresholds[0].window: must be a positive integer, not 1.5"),
        (with_threshold(0, limit="10"), "bans['login_failed'].thresholds[0].limit: must be a positive integer, not '10'"),
        (with_threshold(0, limit=True), "bans['login_failed'].thresholds[0].limit: must be a positive integer, not True"),
        (with_threshold(1, limit=2**64), "bans['login_failed'].thresholds[1].limit: must be a positive integer, not 18446744073709551616"),
        (with_threshold(1, action_duration=0), "bans['login_failed'].thresholds[1].action_duration: must be a positive integer, not 0"),
        (with_threshold(0, action=block_local), "bans['login_failed'].thresholds[0].action: must be a list of callables"),
        (with_threshold(1, action=[notify, "report_central"]), "bans['login_failed'].thresholds[1].action[1]: must be callable, not 'report_central'"),
        (with_threshold(0, actions=[block_local]), "bans['login_failed'].thresholds[0]['actions']: unknown field, expected one of limit, window, action, action_duration"),
        ({"m": {"thresholds": [{"limit": 1, "window": 1, "action": []}]}}, "bans['m'].thresholds[0].action_duration: missing (a positive integer)"),
        ({"m": {"thresholds": [{"window": 1, "action": [], "action_duration": 1}]}}, "bans['m'].thresholds[0].limit: missing (a positive integer)"),
        ({"m": {"thresholds": [{"limit": 1, "window": 1, "action_duration": 1}]}}, "bans['m'].thresholds[0].action: missing (a list of callables)"),
        ({"m": {"thresholds": [[1, 60]]}}, "bans['m'].thresholds[0]: must be a dict"),
        ({"m": {"threshold": []}}, "bans['m']['threshold']: unknown field, expected 'thresholds'"),
        ({"m": {}}, "bans['m'].thresholds: missing"),
        ({"m": {"thresholds": "none"}}, "bans['m'].thresholds: must be a list of threshold dicts"),
        ({"m": []}, "bans['m']: must be a dict with a 'thresholds' list"),
        ({1: {"thresholds": []}}, "bans[1]: a metric name must be a str"),
        ({"": {"thresholds": []}}, "bans['']: a metric name must be 1 to 128 bytes"),
        ([("m", {})], "bans: must be a dict of metric name"),
    ],
)
def test_bad_configuration_names_the_field(bans, message):
    with pytest.raises(ValueError) as err:
        BanHammer(bans)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    bans = good_bans()
    bans["login_failed"]["thresholds"][0]["window"] = 0
    bans["login_failed"]["thresholds"][1]["limit"] = -1
    bans["other"] = {"thresholds": [rule(1, 60, [print, 3], 60)]}
    with pytest.raises(ValueError) as err:
        BanHammer(bans)
    lines = str(err.value).splitlines()
    assert lines == [
        "bans['login_failed'].thresholds[0].window: must be a positive integer, not 0",
        "bans['login_failed'].thresholds[1].limit: must be a positive integer, not -1",
        "bans['other'].thresholds[0].action[1]: must be callable, not 3",
    ]


def test_a_good_configuration_is_accepted_in_any_of_its_forms():
    bh = BanHammer(
        {
            "a": {"thresholds": (rule(1, 1, (), 1),)},  # tuples, no actions
            "b": {"thresholds": []},  # counted for its rates only
        }
    )
    assert bh.metrics == ["a", "b"]
    assert bh.return_rates is False
    assert repr(bh) == "BanHammer(metrics=['a', 'b'], return_rates=False)"
    assert bh.incr("x", "b") is True


# --- calls ---------------------------------------------------------------------------------


def test_incr_answers_a_bool_without_return_rates():
    clock = ManualClock(T0)
    bh = BanHammer({"m": {"thresholds": [rule(2, 60, [block_local], 60)]}}, clock=clock)
    assert bh.incr("a", "m") is True
    assert bh.incr("a", "m") is False
    clock.advance(60)
    assert bh.incr("a", "m") is True


def test_unknown_metric_bad_token_and_bad_threshold_are_value_errors():
    bh = BanHammer(good_bans(), clock=ManualClock(T0))
    with pytest.raises(ValueError, match="unknown metric `nope`"):
        bh.incr("a", "nope")
    with pytest.raises(ValueError, match="token must be 1 to 256 bytes"):
        bh.incr("", "login_failed")
    with pytest.raises(ValueError, match="token must be 1 to 256 bytes"):
        bh.incr("x" * 257, "login_failed")
    with pytest.raises(ValueError, match="metric `login_failed` has no threshold 2"):
        bh.now("a", "login_failed", 2)
    with pytest.raises(ValueError, match="unknown metric `nope`"):
        bh.status("a", "nope")
    with pytest.raises(TypeError):
        bh.incr(1234, "login_failed")
    # Nothing was counted by the refused calls.
    assert bh.status_all() == {}


def test_now_fires_any_threshold():
    calls = []

    def report_central(*args):
        calls.append(args)

    clock = ManualClock(T0)
    bh = BanHammer(
        {"login_failed": {"thresholds": [rule(10, 3600, [block_local], 3600), rule(100, 3600, [report_central], 86400)]}},
        clock=clock,
    )
    bh.now("a", "login_failed", threshold=1)
    assert calls == [("a", 86400, "login_failed", 3600, 100)]
    assert bh.incr("a", "login_failed") is True  # a notice does not block
    assert bh.status("a", "login_failed")["banned"] is False
    bh.now("a", "login_failed")
    assert bh.incr("a", "login_failed") is False


def test_unban_ends_a_ban_now():
    bh = BanHammer(good_bans(), clock=ManualClock(T0))
    assert bh.unban("a") is False
    bh.now("a", "login_failed")
    assert bh.unban("a") is True
    assert bh.status("a", "login_failed")["banned"] is False
    assert bh.incr("a", "login_failed") is True


def test_status_shape():
    clock = ManualClock(T0)
    bh = BanHammer(good_bans(), clock=clock)
    assert bh.status("never-seen", "login_failed") == {
        "token_rate_1m": 0,
        "token_rate_10m": 0,
        "token_rate_60m": 0,
        "thresholds": [
            {"limit": 10, "window": 3600, "value": 0, "holds": False},
            {"limit": 100, "window": 3600, "value": 0, "holds": False},
        ],
        "banned": False,
        "ban": None,
    }
    for _ in range(12):
        bh.incr("a", "login_failed")
    status = bh.status("a", "login_failed")
    assert status["thresholds"][0] == {"limit": 10, "window": 3600, "value": 12, "holds": True}
    assert status["ban"] == {"metric": "login_failed", "threshold": 0, "value": 10, "from": T0, "until": T0 + 3600}


def test_max_tokens_bounds_memory():
    # The cap is split across the engine's 8 shards: here one token each.
    bh = BanHammer(good_bans(), clock=ManualClock(T0), max_tokens=8)
    for i in range(100):
        bh.incr(f"10.0.0.{i}", "login_failed")
    kept = bh.status_all()
    assert 1 <= len(kept) <= 8
    assert "10.0.0.99" in kept  # the least recently seen go first
    with pytest.raises(ValueError, match="max_tokens"):
        BanHammer(good_bans(), max_tokens=0)


def test_idle_tokens_are_forgotten():
    clock = ManualClock(T0)
    bh = BanHammer(good_bans(), clock=clock)
    bh.incr("a", "login_failed")
    clock.advance(3600)
    bh.incr("b", "login_failed")
    assert list(bh.status_all()) == ["b"]


# --- actions -------------------------------------------------------------------------------


def test_block_local_is_recognised_by_name_in_any_form():
    seen = []

    class Firewall:
        def block_local(self, token, duration, key, window, limit):
            seen.append(("method", token))

    def record(token, duration, *rest):
        seen.append(("record", token, duration, rest))

    bh = BanHammer(
        {"m": {"thresholds": [rule(2, 60, [record, Firewall().block_local], 30)]}},
        clock=ManualClock(T0),
    )
    assert bh.incr("a", "m") is True
    assert bh.incr("a", "m") is False  # a bound method named block_local blocks
    assert seen == [("record", "a", 30, ("m", 60, 2)), ("method", "a")]


def test_a_threshold_without_block_local_only_notifies():
    def block_localish(*args):
        pass

    bh = BanHammer({"m": {"thresholds": [rule(1, 60, [block_localish, lambda *args: None], 30)]}}, clock=ManualClock(T0))
    assert all(bh.incr("a", "m") for _ in range(5))


def test_a_raising_action_changes_nothing_but_is_logged_and_counted(caplog):
    after = []

    def report_central(token, duration, key, window, limit):
        raise RuntimeError("central is down")

    def record_local(*args):
        after.append(args)

    def make(actions):
        return BanHammer(
            {"m": {"thresholds": [rule(3, 60, actions, 600)]}}, return_rates=True, clock=ManualClock(T0)
        )

    failing = make([report_central, block_local, record_local])
    healthy = make([block_local, record_local])
    with caplog.at_level(logging.ERROR, logger="banhammer"):
        answers = [failing.incr("a", "m") for _ in range(5)]
    assert answers == [healthy.incr("a", "m") for _ in range(5)]
    assert [passed for passed, _ in answers] == [True, True, False, False, False]
    assert failing.action_errors == 1
    assert healthy.action_errors == 0
    assert len(after) == 2  # the callable after the failing one still ran, in both engines
    assert failing.status("a", "m")["ban"]["until"] == T0 + 600
    [logged] = [r for r in caplog.records if r.name == "banhammer"]
    assert "report_central" in logged.getMessage() and "'a'" in logged.getMessage()
    assert logged.exc_info[0] is RuntimeError


def test_keyboard_interrupt_in_an_action_is_not_swallowed():
    def block_local(*args):
        raise KeyboardInterrupt

    bh = BanHammer({"m": {"thresholds": [rule(1, 60, [block_local], 60)]}}, clock=ManualClock(T0))
    with pytest.raises(KeyboardInterrupt):
        bh.incr("a", "m")
    # The engine had decided before the action ran: the ban holds.
    assert bh.status("a", "m")["banned"] is True
    assert bh.action_errors == 0


def test_actions_may_call_the_banhammer_again():
    seen = []

    def block_local(token, duration, key, window, limit):
        # Runs with no engine lock held: calling back in does not deadlock.
        seen.append(bh.status(token, key)["banned"])
        seen.append(bh.incr("other", key))

    bh = BanHammer({"m": {"thresholds": [rule(2, 60, [block_local], 60)]}}, clock=ManualClock(T0))
    bh.incr("a", "m")
    assert bh.incr("a", "m") is False
    assert seen == [True, True]


# --- clocks --------------------------------------------------------------------------------


def test_manual_clock():
    clock = ManualClock(5)
    assert clock.now() == 5 and clock() == 5
    assert clock.advance(10) == 15
    clock.set(3)
    assert repr(clock) == "ManualClock(3)"
    assert ManualClock().now() == 0
    with pytest.raises(OverflowError):
        clock.advance(-1)


def test_a_callable_clock_is_read_on_every_call_and_floored():
    now = [T0 + 0.9]
    bh = BanHammer(good_bans(), return_rates=True, clock=lambda: now[0])
    bh.incr("a", "login_failed")
    now[0] = T0 + 60.5  # 60 s later once floored: the first event has left the minute
    assert bh.incr("a", "login_failed") == (True, {"token_rate_1m": 1, "token_rate_10m": 2, "token_rate_60m": 2})
    bh.now("b", "login_failed")
    assert bh.status("b", "login_failed")["ban"]["from"] == T0 + 60


def test_time_never_goes_back():
    clock = ManualClock(T0)
    bh = BanHammer(good_bans(), clock=clock)
    bh.now("a", "login_failed")
    clock.set(T0 - 10_000)
    assert bh.status("a", "login_failed")["ban"]["until"] == T0 + 3600
    assert bh.incr("a", "login_failed") is False


def test_bad_clocks():
    with pytest.raises(TypeError, match="ManualClock or a callable"):
        BanHammer(good_bans(), clock=42)
    with pytest.raises(TypeError, match="not str"):
        BanHammer(good_bans(), clock=lambda: "noon")
    ticks = iter([T0])
    bh = BanHammer(good_bans(), clock=lambda: next(ticks))
    with pytest.raises(StopIteration):
        bh.incr("a", "login_failed")  # the clock's own exception comes through


def test_the_default_clock_is_wall_time():
    bh = BanHammer(good_bans())
    bh.now("a", "login_failed")
    ban = bh.status("a", "login_failed")["ban"]
    assert abs(ban["from"] - time.time()) < 5


def test_module_metadata():
    assert banhammer.__version__
    assert banhammer.BanHammer.__doc__ and "sliding windows" in banhammer.BanHammer.__doc__
    assert banhammer.BanHammer.incr.__doc__
