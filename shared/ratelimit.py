"""Per-credential rate limiting: one token bucket per API key, checked before any work.

Every request that presents a bearer key takes one token from that key's bucket; a
request that carries many items (the enrolment batch) takes one more per extra item
(:func:`charge`). A key whose bucket is empty is answered **429** problem+json with
``Retry-After`` (whole seconds until enough tokens are back) and nothing else runs, so
one provider's flood cannot use the capacity another provider's requests need. The
quotas are settings (``rate_limit_per_s``, ``rate_limit_burst``, docs/security.md).

Buckets are keyed by a hash of the presented key (never the key), so the check costs no
database lookup; keys that fail authentication are the failed-auth limiter's business.
Memory is bounded (least recently used buckets dropped first). Operational endpoints
and requests without a key are never limited here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.problems import Problem, problem_response

logger = logging.getLogger(__name__)

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, credential: str, cost: int = 1) -> int | None:
        """Take ``cost`` tokens; None when granted, else seconds to wait (nothing taken).
        A cost above the burst can never be granted: the wait is for a full bucket."""
        now = self._clock()
        tokens, last = self._buckets.pop(credential, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        wait: int | None = None
        if tokens >= cost:
            tokens -= cost
        else:
            missing = min(cost, self.burst) - tokens
            wait = max(1, math.ceil(missing / self.rate_per_s))
        self._buckets[credential] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def credential_of(authorization: str | None) -> str | None:
    """The bucket id of a bearer key (a hash prefix; the key itself is never kept)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def too_many(wait: int) -> Problem:
    return Problem(
        429,
        "Too many requests",
        "This API key is over its request quota; retry after Retry-After seconds.",
        slug="rate-limited",
        headers={"Retry-After": str(wait)},
    )


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(OPS_PATHS):
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        credential = credential_of(authorization)
        if credential is not None:
            wait = self.limiter.take(credential)
            if wait is not None:
                logger.info("request refused: API key over its rate limit")
                await problem_response(too_many(wait), scope.get("path"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def charge(request: Request, extra: int) -> None:
    """Take ``extra`` more tokens for a request that carries several items (raises the
    429 problem when the key's bucket cannot cover them)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    credential = credential_of(request.headers.get("authorization"))
    if limiter is None or credential is None or extra <= 0:
        return
    wait = limiter.take(credential, extra)
    if wait is not None:
        raise too_many(wait)
