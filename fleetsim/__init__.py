"""The fleet simulator behind `latchkey simulate`: what the device poll costs a fleet.

One module per concern, so that each can be reused on its own:

- `units`: durations (`parse_duration`, `describe_duration`) and the time constants.
- `replay`: the agent's poll schedule replayed for one device (`firmware.schedule`, the agent's own
  code), the lastPollAt writes it causes, the power-outage peak and the claim-delay sweep.
- `fleet`: the fleet model (power-on spread, claim delays, never-claimed share) and the sampled,
  scaled simulation of a whole fleet over a horizon.
- `prices`: the list prices (`prices.toml`, package data) and the monthly bill of the device API.
- `study`: everything `latchkey simulate` computes, as data (`run()`, `figures()`), with a progress hook.
- `report`: the side-by-side text tables of a study.
- `plot`: the PNG of a study (matplotlib, imported only when a plot is asked for).

Pure standard library except `plot`; deterministic for a given seed. Method and error:
docs/performance.md.
"""
