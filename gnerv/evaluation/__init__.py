"""Measuring and showing: metrics, BD-rate, classical baselines, plots, reports, evaluation."""
