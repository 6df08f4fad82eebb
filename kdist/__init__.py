"""kdist: a distributed release builder for Kubernetes and other Go projects built with make."""

__version__ = "0.1.0"
