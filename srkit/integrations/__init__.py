"""Bridges from the engine to other tools' loaders (spandrel: ComfyUI, chaiNNer, InvokeAI)."""
