"""What operators see of every request: JSON logs with redaction, and Prometheus metrics."""
