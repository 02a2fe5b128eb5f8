"""The difficulty router: scorers, the routing policy, escalation and capacity rules.

The ingress and the batch jobs build one `Router` from the config (`build_router`) and call
`route` per request; the offline tools (`qwen-cluster router train|calibrate|eval`) live in `pipelines.router_training`.
"""

from deployments.router.policy import RouteDecision, SizeCapacity
from deployments.router.router import Router, build_router

__all__ = ["RouteDecision", "Router", "SizeCapacity", "build_router"]
