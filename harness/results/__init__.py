"""Stage 4, the run directory: manifest.json and results.jsonl, their one writer and one reader.

store.py (RunDir: create, open, manifest, append, repair; the file names and format version) ·
lock.py (one writer at a time) · load.py (load_run -> Run with a DataFrame) · jsonl.py
(crash-safe appends, damaged lines named) · schema.py (the row contract) · errors.py (why a run
cannot be written) · export.py (pytest-benchmark, CSV, Parquet).
"""
