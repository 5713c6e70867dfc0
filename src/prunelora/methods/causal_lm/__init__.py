"""The surgeries of the causal-LM task: structured pruning of MLP neurons and heads, LoRA, and both."""
