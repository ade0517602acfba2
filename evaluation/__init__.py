"""Retrieval evaluation on real documentation: test sets built from documents on this machine,
with queries people wrote (module synopses, section titles).

See :mod:`evaluation.docsets` for the sets and ``bench/quality.py`` for the figures.
"""
