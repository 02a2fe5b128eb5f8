"""The OpenAI-compatible HTTP surface: request models, messages and media, responses and streaming,
auth, errors, the service that answers requests, and the ingress deployment that hosts it."""
