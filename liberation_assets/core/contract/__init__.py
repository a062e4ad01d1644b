"""The contract stage: validate each batch, then serialize what passed and quarantine what failed."""
