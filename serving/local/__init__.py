"""Local-only emulation of the cluster: the stack supervisor (`kfloop serve`) and the router that stands in
for Knative's traffic split. Nothing here runs on a cluster."""
