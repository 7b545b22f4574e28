"""Contract v1: event schemas and the reference vocabularies their fields use."""
