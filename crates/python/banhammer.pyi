"""banhammer: count events per token over exact sliding windows; ban or notify at thresholds.

The seed specification's ``BanHammer`` API on the banhammer Rust core. See docs/python.md.
"""

from typing import Callable, Mapping, Sequence, TypedDict

__version__: str

Action = Callable[..., object]
"""An action: called positionally as ``action(token, duration, key, window, limit)``.

A callable whose ``__name__`` is ``"block_local"`` makes its threshold a ban.
"""

class Threshold(TypedDict):
    limit: int
    """How many events within ``window`` reach the threshold (at least 1)."""
    window: int
    """The sliding window, in seconds (at least 1)."""
    action: Sequence[Action]
    """Called when the threshold is reached; ``block_local`` among them makes it a ban."""
    action_duration: int
    """How long the ban or notice lasts after the threshold was last reached, in seconds."""

class MetricBans(TypedDict):
    thresholds: Sequence[Threshold]

Bans = Mapping[str, MetricBans]

class Stats(TypedDict):
    token_rate_1m: int
    """Events of the metric for the token in the last 60 s, the current one included."""
    token_rate_10m: int
    """... in the last 600 s."""
    token_rate_60m: int
    """... in the last 3600 s."""

class ThresholdStatus(TypedDict):
    limit: int
    window: int
    value: int
    """Events in the threshold's window now."""
    holds: bool
    """Whether ``value`` reaches ``limit`` now."""

# "from" is a Python keyword, hence the functional form.
Ban = TypedDict(
    "Ban",
    {"metric": str, "threshold": int, "value": int, "from": int, "until": int},
)
"""An active ban: started at ``from``, ends at ``until`` (unix seconds) unless extended."""

class Status(TypedDict):
    token_rate_1m: int
    token_rate_10m: int
    token_rate_60m: int
    thresholds: list[ThresholdStatus]
    banned: bool
    ban: Ban | None

class ManualClock:
    """A clock that only moves when told to, for tests: ``BanHammer(bans, clock=ManualClock(0))``.

    Calling it returns the time. A ``BanHammer`` reads it directly, without calling Python.
    """

    def __init__(self, now: int = 0) -> None: ...
    def now(self) -> int:
        """The time shown, in unix seconds."""
    def set(self, now: int) -> None:
        """Sets the time (it may go back; a ``BanHammer``'s own time never does)."""
    def advance(self, seconds: int) -> int:
        """Moves the time forward by ``seconds`` and returns the new time."""
    def __call__(self) -> int: ...

class BanHammer:
    """Counts events per token and metric over exact sliding windows; bans or notifies.

    ``bans`` maps metric names to ``{"thresholds": [{"limit", "window", "action",
    "action_duration"}, ...]}``; every problem in it raises ``ValueError`` naming the field,
    e.g. ``bans['login_failed'].thresholds[1].window: must be a positive integer, not 0``.

    ``clock``: ``None`` (wall time), a :class:`ManualClock`, or any callable returning unix
    seconds (int or float, floored), called once per call. ``max_tokens`` caps the tokens
    kept in memory (least recently seen evicted first; their bans are kept).

    Thread-safe; the GIL is released while the engine works. Actions run after the engine has
    answered, in the calling thread, with the GIL held; an exception in one is logged on the
    ``banhammer`` logger and counted in :attr:`action_errors`.
    """

    def __init__(
        self,
        bans: Bans,
        return_rates: bool = False,
        *,
        clock: ManualClock | Callable[[], float] | None = None,
        max_tokens: int | None = None,
    ) -> None: ...
    def incr(self, token: str, metric: str) -> bool | tuple[bool, Stats]:
        """Counts one event of ``metric`` for ``token`` now.

        Returns whether the token passes: ``False`` while it is banned, from the event that
        reaches a ``block_local`` threshold on. With ``return_rates``: ``(passed, stats)``.
        Raises ``ValueError`` for an unknown metric or a token that is empty or over 256 bytes.
        """
    def now(self, token: str, metric: str, threshold: int = 0) -> Stats:
        """Fires threshold ``threshold`` of ``metric`` for ``token`` at once, as if its limit
        were reached (a ``block_local`` threshold bans now); returns the token's stats."""
    def status(self, token: str, metric: str) -> Status:
        """The token's stats for ``metric`` now, each threshold's count, and its ban."""
    def status_all(self) -> dict[str, dict[str, Stats]]:
        """``{token: {metric: stats}}`` for every token and metric still in memory."""
    def unban(self, token: str) -> bool:
        """Ends the token's ban now; returns whether it was banned."""
    @property
    def action_errors(self) -> int:
        """How many times an action raised (each logged on ``banhammer`` and ignored)."""
    @property
    def return_rates(self) -> bool:
        """Whether :meth:`incr` returns ``(passed, stats)``."""
    @property
    def metrics(self) -> list[str]:
        """The metric names, in the order ``bans`` listed them."""
