"""The joiner (`kfloop joiner`): feedback joined to served impressions, counted per model version and variant."""
