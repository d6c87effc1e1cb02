"""The generative-model zoo: families, losses, real photographs and the builder."""
