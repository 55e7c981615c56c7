//! The cluster simulator: controllers that act only through the Kubernetes API.
