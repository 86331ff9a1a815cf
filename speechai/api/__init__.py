"""Control API v1: request/response schemas, API keys and roles, audit log, rate limits, OpenAPI."""
