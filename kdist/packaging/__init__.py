"""The package stage: reproducible release tarballs (Kubernetes layout), server images."""
