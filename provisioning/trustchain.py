"""The trust chain, as the admin side uses it: the code is the core's (meshd.trustchain).

Kept so admin code and tests keep one import path; routers import meshd.trustchain directly.
"""

from __future__ import annotations

from meshd.trustchain import (
    MAX_ADMINS,
    VERSION_DOMAIN,
    ChainError,
    Pin,
    Version,
    authorising,
    check_pin,
    content_digest,
    match_content,
    propose,
    verify_chain,
)

__all__ = [
    "MAX_ADMINS",
    "VERSION_DOMAIN",
    "ChainError",
    "Pin",
    "Version",
    "authorising",
    "check_pin",
    "content_digest",
    "match_content",
    "propose",
    "verify_chain",
]
