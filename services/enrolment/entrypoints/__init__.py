"""The edge of enrolment: HTTP routes and Kafka subscribers, nothing else."""
