"""Causal language models: the user's (hf:DIR) or a small one built from a config, and their inferred structure."""
