"""The local cluster of scripts/cluster.py: its certificates, processes, node network, node and the stand-in
for KubeDB's operator. Only scripts/cluster.py imports these modules."""
