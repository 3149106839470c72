"""Embedding models behind one interface: fastembed (local ONNX) and OpenAI-compatible APIs."""
