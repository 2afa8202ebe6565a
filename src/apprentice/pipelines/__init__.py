"""Pipelines that compose the layers: train-with-evaluation and the quickstart."""
