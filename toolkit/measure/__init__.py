"""Measurements: peers, visibility, setup cost, footprint. Plain records out."""
