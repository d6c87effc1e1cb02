"""What the evaluation compares, behind one interface: gmtrace, RED's architecture
and the spectral baseline."""
