"""Secure defaults shared by every workload: labels, security contexts, resources.

Plain dicts in the snake_case form pulumi_kubernetes accepts, so they need no Pulumi import.
Everything passes Pod Security "restricted"; loosening any of it takes an explicit change here.
"""

from __future__ import annotations

PART_OF = "pgpool-k8s"


def service_host(service: str, namespace: str) -> str:
    """A Service's fully qualified in-cluster name, resolvable from any namespace."""
    return f"{service}.{namespace}.svc.cluster.local"


def selector_labels(name: str, component: str) -> dict[str, str]:
    """The one label set shared by a workload's selector, pod template and Services."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": name}


def metadata_labels(name: str, component: str, production: bool) -> dict[str, str]:
    labels = {**selector_labels(name, component), "app.kubernetes.io/part-of": PART_OF,
              "app.kubernetes.io/managed-by": "pulumi"}
    if production:
        labels["environment"] = "production"  # read by the policy pack's production rules
    return labels


def pod_security_context(uid: int) -> dict:
    return {
        "run_as_non_root": True,
        "run_as_user": uid,
        "run_as_group": uid,
        "fs_group": uid,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def restricted_pod_spec(uid: int, containers: list[dict], volumes: list[dict], service_account: object = None,
                        **more: object) -> dict:
    """The one pod spec of every workload: non-root as `uid` with the RuntimeDefault seccomp profile, no
    Service environment variables, and an API token only for a pod given a service account (its name,
    a string or an output). `more` adds fields such as init_containers or restart_policy. Every container
    brings its own restricted context (container_security_context)."""
    for container in containers + list(more.get("init_containers", [])):
        if "security_context" not in container:
            raise ValueError(f"container {container['name']} has no security context: use container_security_context")
    spec: dict = {"service_account_name": service_account} if service_account is not None else {}
    spec.update({
        "automount_service_account_token": service_account is not None,
        "enable_service_links": False,
        "security_context": pod_security_context(uid),
        **more,
        "containers": containers,
        "volumes": volumes,
    })
    return spec


def container_security_context(uid: int | None = None) -> dict:
    """Restricted container context; uid for images whose default user is root."""
    context = {
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": True,
        "run_as_non_root": True,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }
    if uid is not None:
        context["run_as_user"] = uid
        context["run_as_group"] = uid
    return context


def secret_env(name: str, secret: object, key: str) -> dict:
    """An env var read from a Secret key (its name a string or an output): never a literal value."""
    return {"name": name, "value_from": {"secret_key_ref": {"name": secret, "key": key}}}


def resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> dict:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def empty_dir(name: str, memory: bool = False, size: str = "16Mi") -> dict:
    """A writable scratch volume, since root filesystems are read-only."""
    return {"name": name, "empty_dir": {"medium": "Memory", "size_limit": size} if memory else {"size_limit": size}}


def soft_anti_affinity(labels: dict[str, str]) -> dict:
    """Prefer spreading replicas over nodes without blocking scheduling on small clusters."""
    return {
        "pod_anti_affinity": {
            "preferred_during_scheduling_ignored_during_execution": [
                {
                    "weight": 100,
                    "pod_affinity_term": {
                        "topology_key": "kubernetes.io/hostname",
                        "label_selector": {"match_labels": labels},
                    },
                }
            ]
        }
    }
