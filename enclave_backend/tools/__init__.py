"""Tool calling for every local model: the model's own call format where its chat template
has one, a grammar-constrained generic JSON envelope where it has none."""
