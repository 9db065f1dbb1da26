"""The `latchkey` console script: mint device identities, inspect and revoke devices (docs/cli.md)."""
