"""Text data for the causal-LM task: question/answer or plain-text examples, their tokens, the embedded benchmark."""
