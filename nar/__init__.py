"""The Voicebox-style flow-matching model from tokens to mel frames."""
