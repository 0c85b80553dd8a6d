"""RetryPolicy back-off and limits, and AMQP topic matching."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from shared.bus import RetryPolicy, is_permanent, topic_matches
from shared.errors import InvalidInput, PermanentError, TransientError


def test_delay_doubles_from_the_base_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=3.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_default_policy_backs_off_half_a_second_first() -> None:
    policy = RetryPolicy()
    assert policy.delay(1) == 0.5
    assert policy.delay(100) == policy.max_delay  # no overflow for large attempt numbers


def test_transient_failures_are_retried_until_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    exc = TransientError("smtp down")
    assert [policy.should_retry(exc, n) for n in (1, 2, 3, 4)] == [True, True, False, False]
    # Unknown exceptions (bugs) are bounded the same way, so they end in the DLQ.
    assert policy.should_retry(RuntimeError("bug"), 2)
    assert not policy.should_retry(RuntimeError("bug"), 3)


def test_single_attempt_policy_never_retries() -> None:
    assert not RetryPolicy(max_attempts=1).should_retry(TransientError(), 1)


def _validation_error() -> ValidationError:
    class Model(BaseModel):
        n: int

    with pytest.raises(ValidationError) as info:
        Model.model_validate({"n": "not a number"})
    return info.value


@pytest.mark.parametrize("exc", [PermanentError("x"), InvalidInput("x"), _validation_error()])
def test_permanent_failures_are_never_retried(exc: BaseException) -> None:
    assert is_permanent(exc)
    assert not RetryPolicy(max_attempts=5).should_retry(exc, 1)


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("item.received", "item.received", True),
    ("item.received", "item.routed", False),
    ("item.*", "item.received", True),
    ("item.*", "item", False),
    ("item.*", "item.received.extra", False),
    ("*.routed", "item.routed", True),
    ("#", "item.received", True),
    ("#", "", True),
    ("item.#", "item", True),
    ("item.#", "item.a.b", True),
    ("#.routed", "item.routed", True),
    ("#.routed", "routed", True),
    ("#.routed", "item.routed.x", False),
    ("item.#.x", "item.a.b.x", True),
    ("item.#.x", "item.a.b", False),
    ("*", "item.received", False),
])
def test_topic_matches_follows_amqp_rules(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected
