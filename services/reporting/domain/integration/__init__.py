"""Integration reports (issue 16): what the Office's programmes do for integration, per
borough, in the language of the Home Office *Indicators of Integration* framework (third
edition, 2019). Pure functions: the repository sums, these modules decide what is
published, with the same disclosure control as every other report
(:mod:`services.reporting.domain.disclosure`): every count is a :class:`Cell` with its
record-key sum, published (perturbed, small counts withheld, rounded) in rounded mode and
exact in the analyst's unrounded mode; every rate is computed from the *published*
numerator and denominator; a median is shown only beside a published count of at least
the threshold.

One module per concern (import from the module itself; this package re-exports nothing):

* :mod:`.periods`: months and calendar quarters, when a mark is observable;
* :mod:`.cells`: the cells of a report with a total over every borough in scope;
* :mod:`.bridges`: :func:`~.bridges.build_bridges`, lasting bridges, the share of
  confirmed cross-background matches still active 6 weeks and 6 months after
  confirmation, by borough and month of confirmation (definitions in
  :mod:`services.reporting.domain.integration_facts`);
* :mod:`.waiting`: :func:`~.waiting.build_waiting`, who is left waiting, by age band,
  sex, ethnic group or borough: unmatched rate and median wait to a first match;
* :mod:`.indicator_definitions`: the framework, its indicators (definition, source events,
  domain) and the domains the platform cannot measure;
* :mod:`.indicators`: :func:`~.indicators.build_indicators`, the framework domains the
  platform can honestly compute from its events, per borough and quarter, and their CSV;
* :mod:`.esol_comparison`: :func:`~.esol_comparison.build_esol_comparison`, ESOL
  retention and achievement of learners with and without a confirmed match, stratified
  on start cohort (quarter), level and borough, with Wilson intervals and a stratified
  difference; associations, not effects.
"""
