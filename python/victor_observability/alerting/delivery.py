"""Notification delivery: concurrent per-channel tasks, per-attempt timeout, bounded retries with backoff + jitter."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random as _random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from victor_observability.alerting._secrets import notifier_secrets
from victor_observability.alerting._secrets import redact as _redact
from victor_observability.alerting._threads import DaemonPool
from victor_observability.alerting.notification import Notification, NotificationError, Notifier

logger = logging.getLogger("victor_observability.alerting")

Sleep = Callable[[float], Awaitable[None]]
OutcomeHook = Callable[[str, str], None]  # (channel, outcome) with outcome in sent|retry|failed|dropped


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try one channel: attempts, per-attempt timeout, exponential backoff with jitter.

    The delay after attempt n is `min(max_delay, base_delay * 2**(n-1))`, reduced by up to `jitter` of itself at
    random; a Retry-After from the channel (capped at `max_retry_after`) is a lower bound.

    >>> DeliveryPolicy(base_delay=1.0, jitter=0.0).delay(3, None, 0.5)
    4.0
    >>> DeliveryPolicy(base_delay=1.0, jitter=0.0).delay(1, 7.0, 0.5)
    7.0
    """

    timeout: float = 10.0
    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("DeliveryPolicy: timeout must be > 0")
        if self.max_attempts < 1:
            raise ValueError("DeliveryPolicy: max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("DeliveryPolicy: delays must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("DeliveryPolicy: jitter must be within [0, 1]")

    def delay(self, attempt: int, retry_after: float | None, rand: float) -> float:
        backoff = float(min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1))))
        backoff *= 1.0 - self.jitter * rand
        if retry_after is not None:
            return float(max(backoff, min(retry_after, self.max_retry_after)))
        return backoff


@dataclass(frozen=True)
class DeliveryFailure:
    """A notification that could not be delivered after all its attempts (kept by the manager, secret-free)."""

    channel: str
    alert_id: str
    rule_name: str
    kind: str
    idempotency_key: str
    attempts: int
    error: str
    failed_at: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Channel:
    """A registered notifier with its delivery policy."""

    name: str
    notifier: Notifier
    policy: DeliveryPolicy


# Plain-function send()s (a blocking SDK) run here, not on asyncio's default executor: one that hangs must not
# starve the application's own to_thread() or the HTTP channels' name lookups. Bounded: past 8 hung sends,
# further ones wait in the queue and time out with their attempt (a queued send then never starts).
_BLOCKING_SENDS = DaemonPool(8, "notify")


async def _attempt(notifier: Notifier, note: Notification) -> None:
    # A plain-function send() (e.g. wrapping a blocking SDK) goes to a thread, never onto the loop.
    send: Callable[[Notification], Any] = notifier.send
    if inspect.iscoroutinefunction(send):
        await send(note)
        return
    result = await _BLOCKING_SENDS.run(send, note)
    if inspect.isawaitable(result):
        await result


class Dispatcher:
    """Runs deliveries as background tasks so that rule evaluation never waits for a channel.

    Notifications of one alert on one channel are delivered in order (a resolution waits for its firing
    notification's retries); different alerts and channels go out concurrently. At most `max_in_flight`
    deliveries are pending; more are dropped and counted.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        on_outcome: OutcomeHook | None = None,
        max_in_flight: int = 1000,
        max_failures: int = 1000,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._on_outcome = on_outcome or (lambda channel, outcome: None)
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._failing: set[str] = set()
        self.failures: deque[DeliveryFailure] = deque(maxlen=max_failures)
        self.sent = 0
        self.dropped = 0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def dispatch(self, channel: Channel, note: Notification) -> None:
        """Start delivering `note` on `channel` in the background (needs a running event loop)."""
        if len(self._tasks) >= self._max_in_flight:
            self.dropped += 1
            self._on_outcome(channel.name, "dropped")
            self._record(channel.name, note, 0, "dropped: too many deliveries in flight")
            return
        key = (channel.name, note.alert.fingerprint)
        previous = self._last.get(key)
        task = asyncio.get_running_loop().create_task(self._deliver(channel, note, previous))
        self._tasks.add(task)
        self._last[key] = task
        task.add_done_callback(lambda t: self._done(key, t))

    def fail(self, channel: str, note: Notification, error: str) -> None:
        """Record a delivery that cannot even start (e.g. a rule names an unknown channel)."""
        self._on_outcome(channel, "failed")
        self._record(channel, note, 0, error)

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every delivery started so far has finished; False if `timeout` ran out first."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not pending

    async def cancel(self) -> None:
        """Cancel pending deliveries (shutdown after a flush that timed out)."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, channel: Channel, note: Notification, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})  # bounded: previous has its own timeouts and attempt limit
        policy = channel.policy
        error = ""
        attempt = 0
        for attempt in range(1, policy.max_attempts + 1):
            retry_after: float | None = None
            retryable = True
            try:
                await asyncio.wait_for(_attempt(channel.notifier, note), policy.timeout)
            except asyncio.TimeoutError:
                error = f"{channel.name}: timed out after {policy.timeout:g}s"
            except NotificationError as exc:
                # Scrubbed again here: a notifier of ours redacts already, a third-party one may not have.
                error = _redact(str(exc), notifier_secrets(channel.notifier))
                retry_after, retryable = exc.retry_after, exc.retryable
            except Exception as exc:  # a third-party notifier: scrub what it says
                detail = _redact(str(exc), notifier_secrets(channel.notifier))
                error = f"{channel.name}: {type(exc).__name__}: {detail}"
            else:
                self.sent += 1
                self._on_outcome(channel.name, "sent")
                if channel.name in self._failing:
                    self._failing.discard(channel.name)
                    logger.info("alert channel %r delivers again", channel.name)
                return
            if not retryable or attempt == policy.max_attempts:
                break
            self._on_outcome(channel.name, "retry")
            await self._sleep(policy.delay(attempt, retry_after, self._random()))
        self._on_outcome(channel.name, "failed")
        self._record(channel.name, note, attempt, error)

    def _record(self, channel: str, note: Notification, attempts: int, error: str) -> None:
        alert = note.alert
        failure = DeliveryFailure(
            channel=channel,
            alert_id=alert.id,
            rule_name=alert.rule_name,
            kind=note.kind,
            idempotency_key=note.idempotency_key,
            attempts=attempts,
            error=error,
            failed_at=self._clock(),
        )
        self.failures.append(failure)
        # Log once per failing streak of a channel; the failure list and counter hold the rest.
        if channel not in self._failing:
            self._failing.add(channel)
            logger.warning(
                "alert notification for rule %r on channel %r failed after %d attempt(s): %s",
                alert.rule_name,
                channel,
                attempts,
                error,
            )
        else:
            logger.debug("alert notification on channel %r failed again: %s", channel, error)
