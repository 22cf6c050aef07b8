"""A run and a sweep: the typed config, the run store, `wattbench run`, `wattbench sweep`, the measured GPU energy of a run."""
