"""The JSON API: every endpoint, its auth, its OpenAPI document, fuzzed and run live."""
