"""The reasoner's pure core: which events feed which model adapter, whose patient they are
about, and why an event cannot be processed. No I/O here; the adapters' engine (inputs,
outputs, cards, the Recommendation message) is `cdsflow.models`."""
