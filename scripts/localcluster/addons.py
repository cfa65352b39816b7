"""What a real node's cluster runs besides the stack: CoreDNS as the cluster DNS, and the permissions of the
stand-in for KubeDB's operator. Plain manifests, applied by scripts/cluster.py when the node is up."""

from __future__ import annotations

COREDNS_NAME = "coredns"
STANDIN_USER = "pgpool-k8s:kubedb-standin"
"""The stand-in's identity: the common name of its client certificate."""

COREFILE = """.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
    reload
    loadbalance
}
"""
"""As kubeadm's, without `forward`: the cluster has no upstream resolver to send other names to."""


def _coredns_rbac() -> list[dict]:
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": COREDNS_NAME, "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": COREDNS_NAME, "namespace": "kube-system"}]},
    ]


def _coredns_pod(image: str) -> dict:
    container = {
        "name": "coredns", "image": image, "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "metadata": {"labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "serviceAccountName": COREDNS_NAME, "dnsPolicy": "Default",
            "priorityClassName": "system-cluster-critical",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": COREDNS_NAME}}],
        },
    }


def coredns(image: str, cluster_ip: str) -> list[dict]:
    """CoreDNS in kube-system behind the Service kube-dns at the kubelet's clusterDNS address."""
    return _coredns_rbac() + [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": COREDNS_NAME, "namespace": "kube-system"},
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": COREDNS_NAME, "namespace": "kube-system",
                                                                     "labels": {"k8s-app": "kube-dns"}},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                  "template": _coredns_pod(image)}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                                             "labels": {"k8s-app": "kube-dns"}},
         "spec": {"clusterIP": cluster_ip, "selector": {"k8s-app": "kube-dns"},
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]


def standin_rbac() -> list[dict]:
    """What KubeDB's operator does that the stand-in does too: read Postgres objects and their Secrets' names,
    manage the StatefulSet and Services it creates for them, label the pods with their role."""
    rules = [
        {"apiGroups": ["kubedb.com"], "resources": ["postgreses"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["kubedb.com"], "resources": ["postgreses/status"], "verbs": ["patch"]},
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]},
    ]
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": STANDIN_USER},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": STANDIN_USER},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": STANDIN_USER},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": STANDIN_USER}]},
    ]
