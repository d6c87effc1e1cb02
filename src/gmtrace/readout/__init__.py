"""What is fitted on a trained network's features after training (probes,
calibration, the grouping embedding, the open-set gallery), and the inference
output every method answers with."""
