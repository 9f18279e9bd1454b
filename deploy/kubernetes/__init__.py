"""Kustomize base and overlays for Confidential Containers, and a renderer for them."""
