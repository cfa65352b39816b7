"""The one way this project creates a Kubernetes Secret."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def kubernetes_secret(name: str, namespace: str, labels: dict, data: dict[str, str], opts: pulumi.ResourceOptions,
                      type_: str = "Opaque") -> k8s.core.v1.Secret:
    """A Secret whose values are Pulumi secrets, so state and previews never show them.

    Its name is fixed and a change updates it in place (the provider's enableSecretMutable, set in
    __main__.py): what reads it by name (KubeDB, the applications of other stacks) never loses it, and
    the pods that read it roll by the checksum of their files, not by a new name."""
    return k8s.core.v1.Secret(
        name,
        metadata={"name": name, "namespace": namespace, "labels": labels},
        type=type_,
        string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
    )
