"""The pgpool-k8s policy pack's rules, importable without starting the pack's gRPC server.

`policies/__main__.py` wraps POLICIES in a PolicyPack for the Pulumi engine; tests use `evaluate`
and `remediate`, which call the same policies with arguments built the way the engine's do.
"""

from .offline import Violation, evaluate, remediate
from .pack import PACK_NAME, POLICIES

__all__ = ["PACK_NAME", "POLICIES", "Violation", "evaluate", "remediate"]
