"""Development tools, apart from the runtime: the jar-based local broker, the sample generator."""
