"""Training: datasets, fine-tuning strategies, metrics, calibration and patient-grouped splits."""
