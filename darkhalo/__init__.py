"""darkhalo: a strong-gravitational-lens finder for the DESI Legacy Imaging Surveys, run as a
chain of stages (survey, select, manifest, inject, train, evaluate, scan, audit), each behind a data
contract, with the lessons of earlier generations enforced as invariants."""

__version__ = "0.2.0"
