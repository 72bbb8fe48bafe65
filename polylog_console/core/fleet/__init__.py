"""The fleet (SPEC §12): every workspace's state read from Prometheus, alerts and acknowledgements
from Alertmanager. Pure: no Textual import."""
