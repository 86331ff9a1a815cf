"""Operator commands on the database: job resets and clean-ups, index checks, instance status."""
