"""Building the shipped default story model: corpus, tokenizer, training."""
