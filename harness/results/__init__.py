"""Stage 4, the run directory: manifest.json and results.jsonl, their one writer and one reader.

store.py (RunDir: create, open, append) · jsonl.py (crash-safe appends) · schema.py (the row
contract) · export.py (pytest-benchmark, CSV, Parquet).
"""
