"""cdsflow reasoner: clinical events in, the health system's model on Triton, recommendations
out."""
