"""The training loop: batches, losses, checkpoints, then the readout fitted on the
trained network."""
