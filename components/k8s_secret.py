"""The one way this project creates a Kubernetes Secret."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def kubernetes_secret(name: str, namespace: str, labels: dict, data: dict[str, str], opts: pulumi.ResourceOptions,
                      type_: str = "Opaque", auto_named: bool = False) -> k8s.core.v1.Secret:
    """A Secret whose values are Pulumi secrets, so state and previews never show them.

    `auto_named`: Pulumi names it `<name>-<suffix>`, so a change creates the new Secret before the old
    one is deleted (a fixed name is deleted first, and with it whatever the engine must replace)."""
    return k8s.core.v1.Secret(
        name,
        metadata={"namespace": namespace, "labels": labels} if auto_named else
                 {"name": name, "namespace": namespace, "labels": labels},
        type=type_,
        string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
    )
