"""Which weights matter for reasoning: behaviour labels, difference of means, attribution patching, protection specs.

See docs/importance.md."""
