"""Everything that talks to models: the catalogue, providers, the local model and the graphs."""
