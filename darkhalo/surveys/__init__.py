"""Surveys: the embedded mock sky and the real Legacy Surveys files, behind one catalog schema
and one cutout-provider interface."""
