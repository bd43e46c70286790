"""Data manifests (JSON Lines) and conversion of users' data sets into them."""
