"""ILR file intake: a provider's monthly Individualised Learner Record XML file, parsed
streaming, mapped onto the enrolment contract and applied as a difference against what
was accepted before (docs/ilr.md)."""
