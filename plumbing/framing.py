"""HTTP/1.1 response framing that a parser cannot tell from the bytes alone (RFC 9112, section 6.3).

httptools (llhttp) frames a response by its status line and headers: a 204 or 304 ends after its head, and a 1xx is
a message of its own. What it cannot know is the request the response answers: a reply to HEAD carries the
Content-Length the same GET would have, but no body follows. Every HTTP/1.1 client here (the inter-service client
and the load generator) applies these two rules on top of the parser, so that they frame responses alike.
"""

from __future__ import annotations

from typing import Final

#: Statuses whose responses never have a body, whatever their headers say.
NO_BODY_STATUSES: Final = frozenset({204, 304})


def is_interim(status: int) -> bool:
    """A 1xx response other than 101 (Switching Protocols): informational, the final response follows it."""
    return 100 <= status < 200 and status != 101


def response_has_body(method: str, status: int) -> bool:
    """Whether a response with ``status`` to a ``method`` request has a body (possibly empty) after its head.

    No body: a reply to HEAD, a 1xx, a 204, a 304. Such a response ends with its head even when it announces a
    Content-Length or a Transfer-Encoding.
    """
    return method != "HEAD" and not (100 <= status < 200 or status in NO_BODY_STATUSES)


__all__ = ["NO_BODY_STATUSES", "is_interim", "response_has_body"]
