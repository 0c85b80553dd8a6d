"""Postfordeler's exception hierarchy.

    PostfordelerError
     ├── ConfigurationError     settings or tenant files are wrong; fix and restart
     ├── TransientError         worth retrying with back-off (broker, SMTP, ESDH down)
     └── PermanentError         retrying will not help; the message is dead-lettered at once
          └── InvalidInput      the input itself is bad (unparseable mail, unknown item)

Handlers raise these; the bus turns them into retries or dead letters. Any other exception is
treated as transient (bounded retries), so a bug ends in the dead-letter queue, not in a loop.
"""


class PostfordelerError(Exception):
    """Base of every error Postfordeler raises on purpose."""


class ConfigurationError(PostfordelerError):
    """Settings or tenant configuration are invalid."""


class TransientError(PostfordelerError):
    """A temporary failure: retry later."""


class PermanentError(PostfordelerError):
    """A failure that retrying will not fix."""


class InvalidInput(PermanentError):
    """The input cannot be processed (for example an unparseable message)."""
