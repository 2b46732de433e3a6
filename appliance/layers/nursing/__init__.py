"""Nursing layer: vitals and early-warning scores, medication administration, tasks, care plans."""
