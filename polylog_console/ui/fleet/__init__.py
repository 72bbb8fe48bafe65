"""The fleet console (``polylog-console fleet``): one row per workspace, from Prometheus and Alertmanager."""
