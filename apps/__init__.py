"""Applications built on flexitts: the Gradio web demo."""
