"""Every Kubernetes object the stack creates says whose it is: an annotation naming the project and the stack.

`make up`'s pre-flight (scripts/preflight.py) reads it on an object that is in the way: another stack's, or
this stack's own that its state lost (an interrupted update), each with its own advice. And whoever meets
the object in the cluster knows which stack to ask.
"""

from __future__ import annotations

from typing import Any

import pulumi

STACK_ANNOTATION = "pgpool-k8s/stack"
"""Its value: `<project>/<stack>`."""


def owner(project: str, stack: str) -> str:
    return f"{project}/{stack}"


def marked(props: dict, stack_owner: str) -> dict:
    """The props of a Kubernetes object (as pulumi_kubernetes takes them) with the owner's annotation."""
    metadata = props.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return props  # not a plain dict here (an Output): left as it is
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        return props
    return {**props, "metadata": {**metadata, "annotations": {**annotations, STACK_ANNOTATION: stack_owner}}}


def marking(stack_owner: str) -> Any:
    """A transformation (for a component's ResourceOptions: it applies to every resource below it) that
    marks each Kubernetes object."""

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if not args.type_.startswith("kubernetes:") or args.type_.startswith("kubernetes:index"):
            return None
        return pulumi.ResourceTransformationResult(marked(args.props, stack_owner), args.opts)

    return transform
