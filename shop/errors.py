"""Domain errors: what the shop's rules can refuse, independent of any transport.

Each error has a stable machine-readable ``code``; the web boundary maps the class to an HTTP status in exactly one
table (``plumbing.web.STATUS``), and a remote caller turns an error reply back into the same class by its code.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal by a business rule. ``code`` is stable and part of the public API."""

    code = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    code = "invalid_input"


class NotFound(DomainError):
    code = "not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class ProductNotFound(NotFound):
    code = "product_not_found"


class OrderNotFound(NotFound):
    code = "order_not_found"


class EmailTaken(DomainError):
    code = "email_taken"


class OutOfStock(DomainError):
    code = "out_of_stock"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"


class IdempotencyKeyReused(DomainError):
    """The same Idempotency-Key was sent with a different request."""

    code = "idempotency_key_reused"


class OrderInProgress(DomainError):
    """A checkout with this Idempotency-Key is still running."""

    code = "order_in_progress"


class StepCancelled(DomainError):
    """A saga step arrived after its compensation (for example a charge after the refund of the same order)."""

    code = "step_cancelled"


class InvalidState(DomainError):
    """The operation does not apply to the current state (for example releasing a committed reservation)."""

    code = "invalid_state"


class Unavailable(DomainError):
    """A part the operation depends on is down or did not answer in time. The operation may be retried."""

    code = "dependency_unavailable"


ALL_ERRORS: tuple[type[DomainError], ...] = (
    DomainError,
    InvalidInput,
    NotFound,
    UserNotFound,
    ProductNotFound,
    OrderNotFound,
    EmailTaken,
    OutOfStock,
    InsufficientFunds,
    IdempotencyKeyReused,
    OrderInProgress,
    StepCancelled,
    InvalidState,
    Unavailable,
)
BY_CODE: dict[str, type[DomainError]] = {cls.code: cls for cls in ALL_ERRORS}
