"""The imperative shell: faust worker, Redis state, CLI, dev stack."""
