"""An application that finds Pgpool-II through the pgpool-k8s stack's outputs.

Where Pgpool-II listens goes into a ConfigMap; the password never passes through this program:
the Deployment reads the stack's credentials Secret by reference, in the stack's namespace.
"""

import os

import pulumi
import pulumi_kubernetes as k8s

config = pulumi.Config()
stack_ref = config.get("stackRef") or "organization/pgpool-k8s/dev"
app = config.get("appName") or "shop"
app_user = config.get("appUser") or ""
image = config.get("appImage") or "postgres:16.4-alpine"
ssl_mode = config.get("sslMode") or "require"
kube_context = config.get("kubeContext") or ""
render_dir = config.get("renderDir") or ".state/manifests"

APP_UID = 70  # the postgres user of the alpine postgres image


def credentials_secret_of(user: str, secrets: dict) -> str:
    """The stack's Secret for `user`, or an error naming the users the stack has."""
    if user not in secrets:
        raise ValueError(f"pgpool-k8s-consumer:appUser = {user!r} is not a user of {stack_ref}; "
                         f"use one of {', '.join(sorted(secrets))}")
    return secrets[user]


database = pulumi.StackReference(stack_ref)
namespace = database.require_output("namespace")
credentials = (database.require_output("appCredentialsSecrets").apply(lambda s: credentials_secret_of(app_user, s))
               if app_user else database.require_output("credentialsSecret"))

if kube_context:
    provider = k8s.Provider("k8s", context=kube_context)
else:
    provider = k8s.Provider("k8s", render_yaml_to_directory=os.path.join(render_dir, pulumi.get_stack()))
opts = pulumi.ResourceOptions(provider=provider)

labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "pgpool-k8s-consumer"}

# libpq reads these itself, so the application needs no connection string.
connection = k8s.core.v1.ConfigMap(
    f"{app}-database",
    metadata={"name": f"{app}-database", "namespace": namespace, "labels": labels},
    data={
        "PGHOST": database.require_output("pgpoolHost"),
        # Numbers cross a StackReference as floats: 9999.0 would not be a port.
        "PGPORT": database.require_output("pgpoolPort").apply(lambda port: str(int(port))),
        "PGSSLMODE": ssl_mode,
    },
    opts=opts,
)


def from_credentials(variable: str, key: str) -> dict:
    return {"name": variable, "value_from": {"secret_key_ref": {"name": credentials, "key": key}}}


deployment = k8s.apps.v1.Deployment(
    app,
    metadata={"name": app, "namespace": namespace, "labels": labels},
    spec={
        "replicas": 1,
        "selector": {"match_labels": {"app.kubernetes.io/name": app}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "automount_service_account_token": False,
                "security_context": {"run_as_non_root": True, "run_as_user": APP_UID, "run_as_group": APP_UID,
                                     "seccomp_profile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "client",
                    "image": image,
                    # Stands in for the application: one query through Pgpool-II every 30 seconds.
                    "command": ["sh", "-c", "while true; do psql -tAc 'SELECT 1' >/dev/null && echo ok; sleep 30; done"],
                    "env_from": [{"config_map_ref": {"name": connection.metadata["name"]}}],
                    "env": [
                        from_credentials("PGUSER", "username"),
                        from_credentials("PGPASSWORD", "password"),
                        # With KubeDB the stack gives every application user a database of its own name.
                        from_credentials("PGDATABASE", "username"),
                    ],
                    "readiness_probe": {"exec_": {"command": ["pg_isready"]}, "period_seconds": 10},
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                  "limits": {"cpu": "100m", "memory": "64Mi"}},
                    "security_context": {"allow_privilege_escalation": False, "read_only_root_filesystem": True,
                                         "capabilities": {"drop": ["ALL"]}},
                    "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
                }],
                "volumes": [{"name": "tmp", "empty_dir": {"size_limit": "16Mi"}}],
            },
        },
    },
    opts=opts,
)

pulumi.export("namespace", namespace)
pulumi.export("connectionConfigMap", connection.metadata["name"])
pulumi.export("deployment", deployment.metadata["name"])
pulumi.export("credentialsSecret", credentials)
