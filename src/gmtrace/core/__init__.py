"""The ground floor: the hyperparameter schema, spectra, metrics, runtime (device,
seeds, threads, progress), files (atomic writes, hashes) and the version. Imports
nothing else of gmtrace."""
