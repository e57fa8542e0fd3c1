"""QIDO-RS (PS3.18 §10.6): query parsing and attribute matching (``query``), the orders results
come in (``ordering``), and the result datasets and paging (``results``). The index backends only
choose which candidates to read; every match is decided here."""
