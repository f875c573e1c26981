"""S4 serving: an OpenAI-compatible HTTP API over the continuous batcher (`deepatlas serve`)."""
