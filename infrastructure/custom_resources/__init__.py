"""Deploy-time custom resources; shipped in the function asset (they reuse `lambdas.adapters`)."""
