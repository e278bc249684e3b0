"""What users write: entities, sources, features, resolvers. Standard library only."""
