"""The one way this project creates a Kubernetes Secret."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def kubernetes_secret(name: str, namespace: str, labels: dict, data: dict[str, str], opts: pulumi.ResourceOptions,
                      type_: str = "Opaque", auto_name: bool = False) -> k8s.core.v1.Secret:
    """A Secret whose values are Pulumi secrets, so state and previews never show them.

    auto_name: the engine names it `<name>-<random suffix>`, so a change of its data creates a new
    Secret, rolls whatever mounts it, and deletes the old one after (a fixed name is replaced delete
    first); read the name from `.metadata["name"]`.
    """
    metadata = {"namespace": namespace, "labels": labels} if auto_name else {"name": name, "namespace": namespace,
                                                                             "labels": labels}
    return k8s.core.v1.Secret(
        name,
        metadata=metadata,
        type=type_,
        string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
    )
