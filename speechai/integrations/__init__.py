"""Integrations: the outbox relay, signed outbound webhooks, the CRM's opportunity attempts (docs/integrations.md)."""
