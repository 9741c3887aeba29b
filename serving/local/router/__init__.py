"""The local router: the per-request stable/canary split Knative does on a cluster."""
