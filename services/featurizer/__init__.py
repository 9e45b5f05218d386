"""featurizer: feature views computed once from the business's topics, into the online and offline stores."""
