"""Monitoring of a running instance: Prometheus metrics (``/metrics``) and the structlog event tap that
feeds them and the dashboard's live feed."""
