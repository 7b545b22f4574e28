"""Reliability tests: the pipeline as real processes under the faults operators cause.

Each test module gets its own Tansu broker (``broker.py``) and its own database server
(``database.py``), so its topics hold exactly the streams it publishes: "no dead letter"
means the ``.dlq`` topics are empty, and a consumer group reading from offset 0 sees
nothing of other modules. Databases and consumer groups are unique per pipeline.

* ``config.py``: sizes and seeds from the environment (modest defaults, so the directory
  runs in a few minutes on two cores), test-speed service settings, progress logging;
* ``processes.py``: services as processes that can be SIGKILLed and SIGTERMed;
* ``kafka_io.py``: publishing, reading whole topics, group offsets;
* ``pipeline.py`` / ``faults.py``: the whole pipeline, its verdict, and the faults;
* ``reporting_oracle.py``: expected report cells from the events, compared with the
  read model;
* ``figures.py``: each test's figures appended to artifacts/reliability.jsonl.
"""
