"""Reporting's use cases, between the entrypoints and the domain: ``queries`` (the
measure and QAR reports: scope, sums, builders) and ``integration_queries`` (issue 16's
reports). The projection's use case is ``services.reporting.use_cases.projector`` and the rebuild
command ``services.reporting.rebuild`` (its module path is the documented command)."""
