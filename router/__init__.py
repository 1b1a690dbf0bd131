"""Pipelines (spec, validation, templates, conditions), the DAG engine, run stores and the router service."""
