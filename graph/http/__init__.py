"""The HTTP surface: the GraphQL endpoint, middleware and JSON responses."""
