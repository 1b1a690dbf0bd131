"""Knative manifests from pipelines and functions; deploy to a cluster."""
