"""Datasets: zoo and RED116 readers, image decoding."""
