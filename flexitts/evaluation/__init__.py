"""Evaluation: intelligibility (WER), speaker similarity, codec quality. Heavy packages load lazily."""
