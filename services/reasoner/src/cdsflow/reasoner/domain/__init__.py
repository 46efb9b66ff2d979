"""The reasoner's pure core: vital signs out of FHIR, the patient's context, the model
adapter, and the Recommendation a score becomes. No I/O here."""
