"""Human agents: their users, their calls (start, end, log, metrics) and the per-person call history."""
