"""Metrics (Prometheus) and tracing."""
