"""Memories: remember, recall and forget text, with keyword (BM25) and semantic recall.

The one service behind both the GraphQL API and the MCP tools.
"""
