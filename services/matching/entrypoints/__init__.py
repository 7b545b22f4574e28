"""The edge of matching: HTTP routes and the Kafka subscriber, nothing else."""
