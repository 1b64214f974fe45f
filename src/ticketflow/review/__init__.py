"""The review desk's core: which tickets wait for a person, and what a person's answer is."""
