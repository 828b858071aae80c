"""Federated training of the chest X-ray model with Flower: each hospital trains on its own films, only weights
and aggregate statistics travel (sites: the simulated hospitals; client/server: the Flower processes; wire:
what may travel besides weights; run: one run end to end, producing the same artifact as central training)."""
