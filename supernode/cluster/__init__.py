"""The cluster: which nodes hold which partitions (placement), coordinated through etcd."""
