"""`cdsflow evaluate`: replay a labelled FHIR dataset through a model adapter and Triton,
measure each model version against the adapter's evaluation gate, and report."""
