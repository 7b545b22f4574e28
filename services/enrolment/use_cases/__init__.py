"""The use-case layer: what HTTP and Kafka entrypoints ask of enrolment.

``intake``: submissions and progress; ``privacy``: consent and erasure; ``ilr``: ILR
file uploads (parsed and mapped by :mod:`services.enrolment.ilr`).
"""
