"""Pure logic: configuration, names, manifest, retention tiers, the streaming pipeline."""
