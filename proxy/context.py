"""What a controller gets for one request: the worker's resources and the auth decision.

Public: :class:`RequestContext`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.acl import Decision
from proxy.cluster import Cluster
from proxy.config import ProxyConfig
from proxy.container_info import InfoCache
from proxy.routing import SwiftPath


@dataclasses.dataclass(slots=True)
class RequestContext:
    cluster: Cluster
    cache: InfoCache
    config: ProxyConfig
    request: web.Request
    path: SwiftPath
    decision: Decision
    # authorizes another request of the same user (COPY's source read); raises SwiftError
    authorize: Callable[[str, SwiftPath], Awaitable[Decision]]

    @property
    def owner(self) -> bool:
        return self.decision is Decision.OWNER
