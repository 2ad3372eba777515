"""Kubernetes manifests (kustomize) and the stream set-up the `nats-streams` Job runs."""
