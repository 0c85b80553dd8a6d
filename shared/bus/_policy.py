from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from shared.errors import PermanentError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """Back-off before attempt `attempt + 1` (attempts count from 1)."""
        return float(min(self.base_delay * 2 ** (attempt - 1), self.max_delay))

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return not is_permanent(exc) and attempt < self.max_attempts


def is_permanent(exc: BaseException) -> bool:
    # A message that does not validate will not validate next time either.
    return isinstance(exc, PermanentError | ValidationError)
