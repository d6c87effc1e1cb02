"""The analyst's product: analyze, scan, group, report, serve. Imports nothing from
train, methods or evaluation."""
