"""The seed specification's example application (example_app.py), checked end to end."""

IP = "203.0.113.7"


def rates(one, ten, sixty):
    return {"token_rate_1m": one, "token_rate_10m": ten, "token_rate_60m": sixty}


def test_tenth_failed_login_within_an_hour_blocks(app):
    for i in range(1, 10):
        # A minute apart: each minute holds one failure, the hour all of them so far.
        assert app.after_login_failed(IP) == (True, rates(1, i, i))
        app.CLOCK.advance(60)
    assert app.Action.blocked == []
    passed, stats = app.after_login_failed(IP)
    assert passed is False
    assert stats == rates(1, 10, 10)
    assert app.after_login_failed(IP)[0] is False
    # Once per ban, with the spec's five arguments, whatever the signature's *args.
    assert app.Action.blocked == [(IP, 3600, "login_failed", 3600, 10)]
    assert app.Action.reported == []
    # Other tokens are not affected.
    assert app.after_login_failed("198.51.100.1") == (True, rates(1, 1, 1))


def test_rates_follow_the_clock(app):
    app.after_login_successful(IP)  # t = 0
    app.CLOCK.advance(30)
    app.after_login_successful(IP)  # t = 30
    app.CLOCK.advance(31)
    # t = 61: the 1-minute window (1, 61] no longer holds the event at 0.
    assert app.after_login_successful(IP) == (True, rates(2, 3, 3))
    app.CLOCK.advance(579)
    # t = 640: (40, 640] holds only 61 and 640; the hour still holds all four.
    assert app.after_login_successful(IP) == (True, rates(1, 2, 4))
    app.CLOCK.advance(2961)
    # t = 3601: the hour (1, 3601] has lost the event at 0.
    assert app.after_login_successful(IP) == (True, rates(1, 1, 4))
    status = app.report_login_successful(IP)
    assert (status["token_rate_1m"], status["token_rate_10m"], status["token_rate_60m"]) == (1, 1, 4)
    app.CLOCK.advance(60)
    # Status reads the clock too: a quiet minute later the 1-minute rate is back to 0.
    assert app.report_login_successful(IP)["token_rate_1m"] == 0


def test_login_from_restricted_ip_blocks_at_once(app):
    stats = app.login_from_restriced_ip(IP)
    assert stats == rates(0, 0, 0)  # firing by hand counts no event
    assert app.Action.blocked == [(IP, 3600, "login_failed", 3600, 10)]
    assert app.after_login_failed(IP)[0] is False
    status = app.banhammer.status(IP, "login_failed")
    assert status["banned"] is True
    assert status["ban"] == {
        "metric": "login_failed",
        "threshold": 0,
        "value": 10,
        "from": app.START,
        "until": app.START + 3600,
    }
    # Firing again during the ban extends it but does not run the action again.
    app.login_from_restriced_ip(IP)
    assert len(app.Action.blocked) == 1


def test_the_ban_ends_after_an_hour(app):
    for _ in range(10):
        app.after_login_failed(IP)
    assert app.banhammer.status(IP, "login_failed")["ban"]["until"] == app.START + 3600
    app.CLOCK.advance(3599)
    assert app.banhammer.status(IP, "login_failed")["banned"] is True
    app.CLOCK.advance(1)
    # At exactly `until` the ban is over, and the ten failures at START have left the window.
    assert app.banhammer.status(IP, "login_failed")["banned"] is False
    assert app.after_login_failed(IP) == (True, rates(1, 1, 1))
    assert app.Action.blocked == [(IP, 3600, "login_failed", 3600, 10)]


def test_failures_during_the_ban_extend_it(app):
    for _ in range(10):
        app.after_login_failed(IP)
    app.CLOCK.advance(1800)
    # Events during a ban still count; the limit is still reached, so the hour restarts.
    assert app.after_login_failed(IP) == (False, rates(1, 1, 11))
    assert app.banhammer.status(IP, "login_failed")["ban"]["until"] == app.START + 1800 + 3600
    app.CLOCK.advance(3599)
    assert app.banhammer.status(IP, "login_failed")["banned"] is True
    app.CLOCK.advance(1)
    assert app.banhammer.status(IP, "login_failed")["banned"] is False
    assert len(app.Action.blocked) == 1  # one ban, one call


def test_hundred_failures_report_centrally_once(app):
    for _ in range(150):
        app.after_login_failed(IP)
    assert app.Action.blocked == [(IP, 3600, "login_failed", 3600, 10)]
    assert app.Action.reported == [(IP, 86400, "login_failed", 3600, 100)]


def test_ten_successful_logins_in_a_minute_are_recorded_not_blocked(app):
    for i in range(1, 13):
        assert app.after_login_successful(IP) == (True, rates(i, i, i))
        app.CLOCK.advance(5)
    # One notice episode: recorded once, even though the 11th and 12th also reach the limit.
    assert app.Action.recorded == [(IP, 3600, "login_successful", 60, 10)]
    assert app.Action.blocked == []
    status = app.report_login_successful(IP)
    assert status["banned"] is False and status["ban"] is None
    assert status["thresholds"] == [{"limit": 10, "window": 60, "value": 11, "holds": True}]


def test_status_all_lists_tokens_and_metrics(app):
    app.after_login_failed(IP)
    app.after_login_successful(IP)
    app.after_login_failed("198.51.100.1")
    assert app.banhammer.status_all() == {
        IP: {"login_failed": rates(1, 1, 1), "login_successful": rates(1, 1, 1)},
        "198.51.100.1": {"login_failed": rates(1, 1, 1)},
    }
