"""Pipeline stage: run a recipe's stages in order, skipping those whose outputs are current."""
