"""The enrolment service: provider intake of enrolments and progress (JSON over HTTP,
Kafka records, ILR files), pseudonymised at the edge, published via the outbox.

Layout (the shape every service follows, issue #14):

* ``app.py`` — composition root: builds the stores, the relay and the use cases.
* ``entrypoints/`` — the edge: ``http.py`` (routes), ``kafka.py`` (the inbound
  subscriber), ``dependencies.py`` (what routes depend on). Status codes and
  problem+json live here only; request/response models in ``schemas.py``.
* ``use_cases/`` — what the entrypoints ask for: ``intake.py`` (submissions, progress),
  ``privacy.py`` (consent, erasure), ``ilr.py`` (ILR file uploads), ``events.py`` (events
  as outbox messages).
* ``domain/`` — the rules, pure: ``submission.py``, ``enrolment.py`` (lifecycle),
  ``progress.py``, ``pseudonyms.py``, ``errors.py``.
* ``ilr/`` — reading, checking and mapping ILR files (``parser.py``, ``aim_checks.py``,
  ``mapping.py``, ``diff.py``, ``report.py``) and their upload store.
* ``repository.py``, ``privacy.py`` — MongoDB adapters (enrolments, providers; the
  learner key vault); ``inbound_auth.py`` — signatures of inbound Kafka records;
  ``admin.py`` — the operator CLI (``python -m services.enrolment.admin``).
"""
