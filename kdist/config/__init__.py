"""Configuration in (inventory): hosts, build profiles, Kubernetes facts, version, as data."""
