"""Deployment definitions (Kubernetes manifests and their renderer)."""
