"""pgpool-k8s: KubeDB PostgreSQL, Pgpool-II and Prometheus on Kubernetes, from one stack's config."""

import os

import pulumi
import pulumi_kubernetes as k8s

from components.stack import PgpoolStack
from components.settings import settings_warnings
from components.stack_config import read_stack

settings, secrets = read_stack()
for warning in settings_warnings(settings):
    pulumi.log.warn(warning)

target = settings.target
# Secrets change in place under their fixed names (KubeDB and other stacks read them by name); the pods
# reading them roll by checksum. ConfigMaps stay immutable: a change is a new, auto-named one.
if target.renders:
    # No cluster configured: write every manifest to a directory to inspect or apply later.
    destination = {"render_yaml_to_directory": os.path.join(target.render_dir, settings.stack)}
else:
    destination = {"kubeconfig": target.kubeconfig or None, "context": target.context or None}
provider = k8s.Provider("k8s", enable_secret_mutable=True, **destination)

system = PgpoolStack("pgpool-k8s", settings, secrets, pulumi.ResourceOptions(providers=[provider]))

pulumi.export("namespace", system.namespace)
pulumi.export("pgpoolHost", system.pgpool_host)
pulumi.export("pgpoolPort", system.pgpool_port)
pulumi.export("primaryService", system.primary_service)
pulumi.export("replicaService", system.replica_service)
pulumi.export("credentialsSecret", system.credentials_secret)
pulumi.export("appCredentialsSecrets", system.app_credentials_secrets)
pulumi.export("metricsEndpoint", system.metrics_endpoint)
pulumi.export("prometheusUrl", system.prometheus_url)
if secrets.superuser.password:  # unknown to us when another operator owns it (env mode)
    pulumi.export("superuserPassword", pulumi.Output.secret(secrets.superuser.password))
if target.renders:
    pulumi.export("renderedManifests", os.path.join(target.render_dir, settings.stack))
