"""The seed specification's example application, on the banhammer package.

Reconstructed from the spec: an ``Action`` class with three actions, the ``BANS`` rules, and
the four functions a login service calls. The only addition is the injected clock (``CLOCK``)
so that the tests can move time without sleeping; a real service leaves ``clock`` out and gets
wall time. The actions record their calls in lists so that the tests can check them.
"""

from banhammer import BanHammer, ManualClock

# 2023-11-14 22:13:20 UTC; any time works, the engine only looks at differences.
START = 1_700_000_000


class Action:
    """The spec's three actions. ``block_local``'s name is what makes its threshold a ban."""

    blocked: list = []
    reported: list = []
    recorded: list = []

    @staticmethod
    def block_local(token, duration, *args):
        # The ban itself is the engine's: incr answers False while it lasts.
        Action.blocked.append((token, duration) + args)

    @staticmethod
    def report_central(token, duration, key, window, limit):
        Action.reported.append((token, duration, key, window, limit))

    @staticmethod
    def record_local(token, duration, key, window, limit):
        Action.recorded.append((token, duration, key, window, limit))


BANS = {
    "login_failed": {
        "thresholds": [
            {
                "limit": 10,
                "window": 3600,
                "action": [Action.block_local],
                "action_duration": 3600,
            },
            {
                "limit": 100,
                "window": 3600,
                "action": [Action.report_central],
                "action_duration": 86400,
            },
        ]
    },
    "login_successful": {
        "thresholds": [
            {
                "limit": 10,
                "window": 60,
                "action": [Action.record_local],
                "action_duration": 3600,
            },
        ]
    },
}

CLOCK = ManualClock(START)
banhammer = BanHammer(BANS, return_rates=True, clock=CLOCK)


def after_login_failed(ip):
    """Counts a failed login; returns ``(passed, stats)``: passed is False while banned."""
    return banhammer.incr(ip, "login_failed")


def login_from_restriced_ip(ip):
    """A login from a restricted IP blocks it at once (the spec's spelling kept)."""
    return banhammer.now(ip, "login_failed")


def after_login_successful(ip):
    """Counts a successful login; ten within a minute records the IP locally."""
    return banhammer.incr(ip, "login_successful")


def report_login_successful(ip):
    """The IP's successful-login rates and ban state."""
    return banhammer.status(ip, "login_successful")
