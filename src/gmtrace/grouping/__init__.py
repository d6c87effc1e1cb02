"""Clustering a case's images by source GM without knowing how many GMs there are."""
