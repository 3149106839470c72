"""GraphQL: the schema, preparing and policing operations, and their executors."""
